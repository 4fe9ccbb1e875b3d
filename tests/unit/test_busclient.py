"""The one D-Bus client (agtap/busclient.py): its error table, and what agtapctl makes of each error.

agtapctl and agtap-tui used to carry a client each, with different tables (the
TUI called InteractiveAuthorizationRequired a denial, agtapctl did not) and
timeouts (the TUI gave Start 5 s, though it may compile the BPF programs).
The real client against a real dbus-daemon: test_tui_busclient.py, test_ctl.py.
"""

from __future__ import annotations

import asyncio

import pytest

from agtap import busclient as bc
from agtap import busnames as B
from agtap.ctl import CONTROL_FIX, EXIT_DENIED, EXIT_ERROR, EXIT_NOT_RUNNING, READ_FIX, ctl_error

E = "org.freedesktop.DBus.Error."


@pytest.mark.parametrize("name,kind", [
    (E + "AccessDenied", bc.AccessDenied),
    (B.ERROR_ACCESS_DENIED, bc.AccessDenied),
    (E + "InteractiveAuthorizationRequired", bc.AccessDenied),
    (E + "ServiceUnknown", bc.NotRunning),
    (E + "NameHasNoOwner", bc.NotRunning),
    (E + "UnknownObject", bc.NotRunning),
    (E + "NoReply", bc.NoAnswer),
    (E + "Timeout", bc.NoAnswer),
    (B.ERROR_INVALID_ARGUMENT, bc.ServiceError),
    (B.ERROR_NOT_FOUND, bc.ServiceError),
    ("com.example.Whatever", bc.ServiceError),
])
def test_error_table(name, kind):
    e = bc._error(name, "text")
    assert type(e) is kind and e.name == name and e.text == "text"


def test_no_answer_is_a_kind_of_not_running():
    """The dashboard treats a service that does not answer as not running, and asks again."""
    assert issubclass(bc.NoAnswer, bc.NotRunning)


@pytest.mark.parametrize("err,control,code,text", [
    (bc.BusUnavailable("", "No such file"), False, EXIT_NOT_RUNNING, "cannot reach the system bus (No such file)"),
    (bc.NotRunning(E + "ServiceUnknown", "x"), False, EXIT_NOT_RUNNING,
     "agtap is not running: sudo systemctl start agtap"),
    (bc.AccessDenied(E + "AccessDenied", "x"), False, EXIT_DENIED, "access denied: " + READ_FIX),
    (bc.AccessDenied(B.ERROR_ACCESS_DENIED, "x"), True, EXIT_DENIED, "access denied: " + CONTROL_FIX),
    (bc.ServiceError(B.ERROR_INVALID_ARGUMENT, "n -1: must be"), False, EXIT_ERROR, "invalid argument: n -1: must be"),
    (bc.ServiceError(B.ERROR_NOT_FOUND, "no stored bodies"), False, EXIT_ERROR, "not found: no stored bodies"),
    (bc.ServiceError("com.example.E", "boom\nforged"), False, EXIT_ERROR, "com.example.E: boom"),
    (bc.NoAnswer(E + "NoReply", "Did not receive a reply"), False, EXIT_ERROR, "agtap did not answer (Did not"),
])
def test_what_agtapctl_says(err, control, code, text):
    e = ctl_error(err, "system", control)
    assert e.code == code and str(e).startswith(text), str(e)
    assert "\n" not in str(e)


def test_our_own_timeout_says_how_long():
    e = bc.NoAnswer("timeout", "GetAll: no answer within 3 s")
    e.timeout = 3.0
    assert str(ctl_error(e, "system", False)).startswith("agtap did not answer within 3 s: is it stuck?")


def test_control_methods_wait_longer_than_reads(monkeypatch):
    """Start may compile the BPF programs (~25 s here) or wait on a polkit prompt; reads wait `timeout`."""
    waited = []

    async def wait_for(aw, timeout):
        aw.close()
        waited.append(timeout)
        raise asyncio.TimeoutError

    class Bus:
        connected = True

        async def call(self, msg):
            raise AssertionError("not reached")

    monkeypatch.setattr(bc.asyncio, "wait_for", wait_for)
    c = bc.BusClient("system", timeout=bc.DASHBOARD_TIMEOUT_S)
    c._bus = Bus()

    async def go():
        with pytest.raises(bc.NoAnswer):
            await c.get_stats()
        with pytest.raises(bc.NoAnswer):
            await c.start()
    asyncio.run(go())
    assert waited == [bc.DASHBOARD_TIMEOUT_S, bc.CONTROL_TIMEOUT_S] and bc.CONTROL_TIMEOUT_S >= 120
