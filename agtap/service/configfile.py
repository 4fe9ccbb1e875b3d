"""/etc/agtap/agtap.toml: every key is a flag's long name with '-' written '_'.

    # /etc/agtap/agtap.toml
    comm = ["python3", "node"]       # or: comms = [...]   (repeatable flags take a list)
    pid = [1234]                     # or: pids = [...]
    max_log_size = 100               # MB
    max_body_store = 1024            # MB
    body_retention = 168             # hours

Precedence, highest first: flags, then this file, then the environment
(AGTAP_LOG), then the defaults in agtap/config.py. A key this file does not
know is an error that names it; so is a value of the wrong type.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from typing import Any

from agtap.config import PROBE_SCOPES, Config

# Flag spellings that differ from the Config field they fill.
ALIASES = {"pid": "pids", "comm": "comms", "log": "event_log"}   # flag spelling -> Config field
# Config fields that make no sense in a file read by the service.
NOT_IN_FILE = {"record"}


class ConfigFileError(Exception):
    """Says which file, which key, and what was expected."""


def _field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config) if f.name not in NOT_IN_FILE}


def _check(path: str, key: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)

    def bad(expected: str) -> ConfigFileError:
        return ConfigFileError(f"{path}: {key} = {value!r}: expected {expected}")

    if origin is list:
        (item,) = args
        if not isinstance(value, list):
            raise bad(f"a list of {item.__name__}")
        return [_check(path, key, v, item) for v in value]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _check(path, key, value, inner[0])
    if hint is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("a whole number")
        if value < 0:
            raise bad("a number ≥ 0")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        if value < 0:
            raise bad("a number ≥ 0")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise bad("a string")
        return value
    raise bad(str(hint))


def load_config_file(path: str, *, missing_ok: bool = True) -> dict[str, Any]:
    """The file's settings as {Config field: value}, validated. {} when the file is absent and missing_ok."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        if missing_ok:
            return {}
        raise ConfigFileError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigFileError(f"{path}: not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigFileError(f"{path}: {e.strerror}") from None
    types = _field_types()
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = ALIASES.get(key, key)
        if name not in types:
            known = ", ".join(sorted(set(types) | set(ALIASES)))
            raise ConfigFileError(f"{path}: unknown key {key!r} (known keys: {known})")
        if name in out:
            raise ConfigFileError(f"{path}: {key!r} given twice (as {name!r} and an alias)")
        out[name] = _check(path, key, value, types[name])
    if "probe_scope" in out and out["probe_scope"] not in PROBE_SCOPES:
        raise ConfigFileError(f"{path}: probe_scope = {out['probe_scope']!r}: expected "
                              + " or ".join(f'"{s}"' for s in PROBE_SCOPES))
    if "bus" in out and out["bus"] not in ("system", "session", "none"):
        raise ConfigFileError(f"{path}: bus = {out['bus']!r}: expected \"system\", \"session\" or \"none\"")
    if out.get("pids") or out.get("comms"):
        from agtap.service.controller import InvalidArgument, validate_filter
        try:
            validate_filter(out.get("pids", []), out.get("comms", []))
        except InvalidArgument as e:
            raise ConfigFileError(f"{path}: {e}") from None
    return out


def build_config(flags: dict[str, Any] | None, path: str | None,
                 env: dict[str, str] | None = None, base: Config | None = None) -> Config:
    """Config from the precedence chain: defaults < environment < file < flags.

    `flags` holds only the Config fields the user gave on the command line.
    """
    cfg = dataclasses.replace(base) if base is not None else Config()
    cfg.apply_env(os.environ if env is None else env)
    if path:
        for k, v in load_config_file(path).items():
            setattr(cfg, k, v)
    for k, v in (flags or {}).items():
        setattr(cfg, k, v)
    return cfg
