"""agtap's use of dbus-next's private internals (agtap/service/dbusnext_private.py) is pinned to the
dbus-next it was checked against: any other version, or any change to the pieces used, fails here
with what changed. Debian 12 (0.2.3-3) and Debian 13 (0.2.3-4) ship the same 0.2.3 code."""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import inspect
import re
from pathlib import Path

import pytest

from agtap.service import dbusnext_private as priv

ROOT = Path(__file__).resolve().parents[2]


def _resolve(dotted: str):
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for a in parts[i:]:
            obj = getattr(obj, a)
        return obj
    raise ImportError(dotted)


def test_the_installed_dbus_next_is_a_tested_version():
    v = importlib.metadata.version("dbus-next")
    assert v in priv.TESTED_VERSIONS, (
        f"dbus-next {v} is not one agtap's private uses were checked against ({priv.TESTED_VERSIONS}): "
        "check agtap/service/dbusnext_private.py against it, then update TESTED_VERSIONS and PINNED_SOURCES")


@pytest.mark.parametrize("dotted", sorted(priv.PINNED_SOURCES))
def test_each_private_piece_is_unchanged(dotted):
    obj = _resolve(dotted)
    digest = hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]
    assert digest == priv.PINNED_SOURCES[dotted], (
        f"{dotted} changed in this dbus-next: check agtap/service/dbusnext_private.py against it")


def test_the_aio_bus_dispatches_with_the_pinned_method():
    from dbus_next.aio import MessageBus
    from dbus_next.message_bus import BaseMessageBus
    assert MessageBus._process_message is BaseMessageBus._process_message


def test_the_writer_has_what_the_patch_uses():
    """Every attribute write_callback reads on the writer is set by the pinned __init__."""
    from dbus_next.aio.message_bus import _MessageWriter
    init = inspect.getsource(_MessageWriter.__init__)
    used = set(re.findall(r"\bw\.(\w+)", inspect.getsource(priv.tolerate_slow_bus)))
    used -= {"write_callback", "_agtap_patched"}                 # what the patch itself sets
    assert used and all(f"self.{a} =" in init for a in used), used


def test_no_other_module_touches_dbus_next_privates():
    private = re.compile(r"\._process_message\b|\._writer\b|\._finalize\b|dbus_next\.[\w.]*\._|"
                         r"from dbus_next[\w.]* import [^\n]*\b_\w")
    found = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "agtap").rglob("*.py"))
             if p.name != "dbusnext_private.py" and private.search(p.read_text())]
    assert found == []
