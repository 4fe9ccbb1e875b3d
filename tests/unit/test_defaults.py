"""Defaults have one source, agtap/config.py. The CLI help is generated from it; the
man page and etc/agtap.toml are written by hand, so this test reads them and fails
when one of them shows another value."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

from agtap import cli
from agtap.config import Config, shown
from agtap.service.configfile import ALIASES, NOT_IN_FILE

REPO = Path(__file__).resolve().parents[2]
D = Config()
# fields whose default is "off / everything": the file shows an example, the docs say no number
NO_VALUE = {f.name for f in dataclasses.fields(Config) if getattr(D, f.name) in (None, [])}
# flags the man page and the help describe without a "(default ...)": a switch's default is its absence
SWITCHES = {"verbose", "stdout"}


def test_the_switches_and_off_settings_are_what_this_test_thinks():
    assert NO_VALUE == {"pids", "comms", "otel", "metrics_addr", "record"}
    assert (D.verbose, D.stdout) == (False, True)


def option_defaults_in_help() -> dict[str, str]:
    out = {}
    for action in cli.parser()._actions:
        if action.dest in cli.FLAG_FIELDS and action.help:
            pattern = r"\(default ([^;)\s]+)" if isinstance(getattr(D, action.dest), list) else r"\(default ([^;,)]+)"
            m = re.search(pattern, action.help)
            out[action.dest] = m.group(1) if m else None
    return out


def test_cli_help_shows_every_default_of_config():
    helps = option_defaults_in_help()
    assert set(helps) == set(cli.FLAG_FIELDS)
    for name, value in helps.items():
        if name in NO_VALUE or name in SWITCHES:
            assert value is None, name
        else:
            assert value == shown(getattr(D, name)), name


def man_option_blocks() -> dict[str, str]:
    """--long-option -> the text of its paragraph in man/agtap.8, roff markup removed."""
    text = (REPO / "man/agtap.8").read_text()
    opts = text[text.index(".SH OPTIONS"):text.index(".SH ENVIRONMENT")]
    out = {}
    for para in opts.split(".TP\n")[1:]:
        lines = para.splitlines()
        flags = re.findall(r"\\-\\-([a-z\\-]+)", lines[0])
        body = " ".join(re.sub(r"^\.(IR|BR|RI|B|I)\s+", "", ln) for ln in lines[1:])
        body = body.replace("\\-", "-").replace('"', "").replace(" ;", ";").replace(" )", ")")
        for f in flags:
            out[f.replace("\\-", "-")] = body
    return out


def test_man_page_shows_the_same_defaults():
    blocks = man_option_blocks()
    dest = {a.option_strings[-1].lstrip("-"): a.dest for a in cli.parser()._actions if a.dest in cli.FLAG_FIELDS}
    assert {dest[f] for f in blocks if f in dest} == set(cli.FLAG_FIELDS), "every flag is in the man page"
    for flag, body in blocks.items():
        name = dest[flag]
        m = re.search(r"\(default ([^;)\s]+)" if isinstance(getattr(D, name), list) else r"\(default ([^;,)\s]+)",
                      body)
        if name in NO_VALUE or name in SWITCHES:
            assert m is None, flag
        else:
            assert m, f"man page: --{flag} does not say its default"
            assert m.group(1) == shown(getattr(D, name)), flag


def test_etc_agtap_toml_shows_the_same_defaults():
    seen = {}
    for line in (REPO / "etc/agtap.toml").read_text().splitlines():
        m = re.match(r"#([a-z_]+) = ", line)
        if m:
            value = tomllib.loads(line[1:].split("   #")[0])[m.group(1)]
            seen[ALIASES.get(m.group(1), m.group(1))] = value
    fields = {f.name for f in dataclasses.fields(Config)} - NOT_IN_FILE
    assert set(seen) == fields, "every setting has its line"
    for name, value in seen.items():
        if name in NO_VALUE:
            assert value, f"{name}: an example value"
        else:
            assert shown(value) == shown(getattr(D, name)), name
