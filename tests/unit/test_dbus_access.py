"""Who may call what on io.agtap.Agtap1: a real dbus-daemon with the shipped policy, real users.

The daemon is the real one (agtap.service.daemon.run) with the FakeTracer
(loading BPF is the bpf tier's job). Clients run as root, as agtap-tester
(group agtap) and as agtap-outsider (not in the group), each in its own
process under runuser. Needs root: it creates those users and switches to them.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from agtap import busnames as B
from tests.support.dbus.bus import OUTSIDER, TESTER, PrivateBus
from tests.support.dbus.procs import PY, Daemon, as_user, client_calls, env_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates test users and switches to them")

PROPS = "org.freedesktop.DBus.Properties"
R, C = B.READ_INTERFACE, B.CONTROL_INTERFACE
BUS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"


def read_spec(call_id: str) -> list:
    return [
        [PROPS, "Get", "ss", [R, "Version"]],
        [PROPS, "Get", "ss", [R, "Capturing"]],
        [PROPS, "Get", "ss", [R, "Filters"]],
        [PROPS, "Get", "ss", [R, "Targets"]],
        [PROPS, "Get", "ss", [R, "StartedAt"]],
        [PROPS, "GetAll", "s", [R]],
        ["org.freedesktop.DBus.Introspectable", "Introspect", "", []],
        [R, "GetStats", "", []],
        [R, "GetRecentCalls", "u", [10]],
        [R, "GetCallBodies", "s", [call_id]],
    ]


CONTROL_SPEC = [
    [C, "SetFilter", "auas", [[1], ["python3"]]],
    [C, "ClearFilter", "", []],
    [C, "Stop", "", []],
    [C, "Start", "", []],
    [C, "Clean", "", []],
]


@pytest.fixture(scope="module")
def call_id(daemon, env):
    (res,) = client_calls("root", [[R, "GetRecentCalls", "u", [1]]], env)
    import json
    return json.loads(res["body"][0][0])["event_id"]


def test_root_may_read_everything(daemon, env, call_id):
    res = client_calls("root", read_spec(call_id), env)
    assert all(r["ok"] for r in res), res
    version, capturing, filters, targets, started = (r["body"][0] for r in res[:5])
    assert version and capturing is True and set(filters) == {"pids", "comms"}
    assert len(targets) == 2 and started > 1_600_000_000_000_000
    assert set(res[5]["body"][0]) == {"Version", "Capturing", "Filters", "Targets", "StartedAt"}
    assert "CallCaptured" in res[6]["body"][0] and C in res[6]["body"][0]
    stats = res[7]["body"][0]
    assert stats["calls"] >= 3 and stats["calls_by_provider"]["anthropic"] >= 3
    assert len(res[8]["body"][0]) >= 3
    body = res[9]["body"][0]
    assert "sk-ant-api03" not in body           # stored redacted


def test_group_member_may_read_everything(daemon, env, call_id):
    res = client_calls(TESTER, read_spec(call_id), env)
    assert all(r["ok"] for r in res), res


def test_outsider_is_denied_every_read_by_the_bus_policy(daemon, env, call_id):
    res = client_calls(OUTSIDER, read_spec(call_id), env)
    assert [r.get("error") for r in res] == [BUS_DENIED] * len(res), res


def test_group_member_and_outsider_are_denied_control_in_code(daemon, env):
    # The policy lets everyone send to the control interface (for polkit); with no
    # polkit on this bus, the service allows root only.
    for user in (TESTER, OUTSIDER):
        res = client_calls(user, CONTROL_SPEC, env)
        assert [r.get("error") for r in res] == [B.ERROR_ACCESS_DENIED] * len(res), (user, res)


def test_root_may_control(daemon, env):
    res = client_calls("root", CONTROL_SPEC + [[PROPS, "Get", "ss", [R, "Capturing"]]], env)
    assert all(r["ok"] for r in res), res
    assert res[-1]["body"][0] is True                   # Stop then Start
    assert not os.listdir(os.path.join(daemon.workdir, "bodies")) or all(
        not files for _, _, files in os.walk(os.path.join(daemon.workdir, "bodies")))   # Clean


def test_named_errors_never_tracebacks(daemon, env):
    res = client_calls("root", [
        [C, "SetFilter", "auas", [[0], []]],
        [C, "SetFilter", "auas", [[], ["a-name-longer-than-15"]]],
        [C, "SetFilter", "auas", [[], ["bad\x1bname"]]],
        [R, "GetCallBodies", "s", ["../../etc/shadow"]],
        [R, "GetCallBodies", "s", ["0" * 32]],
        [PROPS, "Set", "ssv", [R, "Capturing", ["b", False]]],
        [R, "NoSuchMethod", "", []],
    ], env)
    errors = [r.get("error") for r in res]
    assert errors[:5] == [B.ERROR_INVALID_ARGUMENT] * 4 + [B.ERROR_NOT_FOUND], res
    assert errors[5] and errors[6], res
    assert not any("Traceback" in (r.get("text") or "") or 'File "' in (r.get("text") or "") for r in res), res


def test_code_rechecks_reads_even_if_the_bus_policy_is_too_open(users, tmp_path):
    """Defence in depth: with a policy that lets anyone send to agtap, the service still refuses outsiders."""
    loose = tmp_path / "loose.conf"
    loose.write_text(f"""<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <policy user="root"><allow own="{B.BUS_NAME}"/></policy>
  <policy context="default"><allow send_destination="{B.BUS_NAME}"/></policy>
</busconfig>""")
    os.chmod(tmp_path, 0o755)
    with PrivateBus(includes=[loose]) as b, tempfile.TemporaryDirectory() as d:
        dm = Daemon(d, b.env(), "--calls", "1").ready()
        try:
            res = client_calls(OUTSIDER, read_spec("0" * 32), env_for(b.env()))
            assert [r.get("error") for r in res] == [B.ERROR_ACCESS_DENIED] * len(res), res
            ok = client_calls(TESTER, read_spec("0" * 32)[:-1], env_for(b.env()))
            assert all(r["ok"] for r in ok), ok
        finally:
            assert dm.stop() == 0


def test_signals_reach_the_group_but_not_outsiders(daemon, env):
    import signal
    import subprocess
    listeners = {}
    for user in ("root", TESTER, OUTSIDER):
        cmd = (["runuser", "-u", user, "--"] if user != "root" else []) + [
            PY, "-m", "tests.support.dbus.client", "listen", "3"]
        p = subprocess.Popen(cmd, cwd=str(Path(__file__).resolve().parents[2]), env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
        listeners[user] = p
    daemon.proc.send_signal(signal.SIGUSR1)          # one more crafted call
    got = {u: p.communicate(timeout=10)[0].strip() for u, p in listeners.items()}
    assert got["root"].startswith("got ") and got[TESTER].startswith("got "), got
    assert '"provider":"anthropic"' in got[TESTER]
    assert got[OUTSIDER] == "none", got


def test_only_root_may_own_the_name(bus, env):
    code = ("import asyncio\nfrom dbus_next.aio import MessageBus\nfrom dbus_next import BusType\n"
            "async def m():\n b = await MessageBus(bus_type=BusType.SYSTEM).connect()\n"
            f" print(await b.request_name('{B.BUS_NAME}'))\nasyncio.run(m())")
    r = as_user(TESTER, [PY, "-c", code], env)
    assert r.returncode != 0 and "not allowed to own" in r.stderr, r.stderr
