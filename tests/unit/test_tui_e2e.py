"""agtap-tui end to end: the real service (FakeTracer instead of BPF) on a private system-type
dbus-daemon with the shipped policy, agtap-tui run by an unprivileged member of group agtap
inside tmux at 80×24.

Needs root (creates the test users, runs the service as root); skipped without it, as
test_dbus_access.py is. `bus` is tests/unit/conftest.py's.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time

import pytest

from tests.support.dbus.bus import OUTSIDER, TESTER
from tests.support.dbus.procs import PY, Daemon, as_user, env_for
from tests.support.tui.tmux import Tmux

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: runs the service as root and switches users")

DENIED_LINE = ("agtap-tui: access denied: add yourself to group agtap: "
               "sudo usermod -aG agtap $USER, then log in again")


def _rows(lines):
    """Call rows on the call table screen (lines that start with a time)."""
    return [ln for ln in lines if len(ln) > 9 and ln[2] == ":" and ln[5] == ":" and ln[:2].isdigit()]


def _daemon(workdir, bus, calls=1):
    return Daemon(workdir, bus.env(), "--calls", str(calls)).ready()


def test_outsider_gets_one_line_and_exit_4(bus):
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o755)
        dm = _daemon(d, bus)
        try:
            r = as_user(OUTSIDER, [PY, "-m", "agtap.tui.app"], env_for(bus.env()))
        finally:
            assert dm.stop() == 0, dm.err
    assert r.returncode == 4, (r.returncode, r.stdout, r.stderr)
    assert r.stderr == DENIED_LINE + "\n"


def test_dashboard_live_detail_reconnect_and_quit(bus):
    env = {k: v for k, v in env_for(bus.env()).items()
           if k in ("DBUS_SYSTEM_BUS_ADDRESS", "PYTHONPATH", "PATH", "LANG", "LC_ALL")}
    env.setdefault("LANG", "C.UTF-8")
    tmux = Tmux(f"agtap-tui-e2e-{os.getpid()}")
    with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
        os.chmod(d1, 0o755)
        os.chmod(d2, 0o755)
        dm = _daemon(d1, bus, calls=1)
        try:
            tmux.start(["runuser", "-u", TESTER, "--", PY, "-m", "agtap.tui.app"], env)
            # the call made before the dashboard started comes from GetRecentCalls
            lines = tmux.wait_for(lambda ls: len(_rows(ls)) == 1 and "capturing" in ls[0], 10)
            assert "claude-sonnet-4-5" in _rows(lines)[0] and "python3[4242]" in _rows(lines)[0]
            assert lines[2].startswith("TIME      PROCESS")
            # a new call: its row is on top within 2 s (CallCaptured)
            t0 = time.monotonic()
            dm.proc.send_signal(signal.SIGUSR1)
            lines = tmux.wait_for(lambda ls: len(_rows(ls)) == 2, 2.0)
            assert time.monotonic() - t0 < 2.0
            assert "claude-sonnet-4-5    12    34     -  50ms " in _rows(lines)[0]   # the fake call: 12 in, 34 out
            assert lines[1].startswith("calls 2  in 24  out 68 ")    # totals move with the signal
            # Enter: every field, and the bodies (group agtap may read them; secrets removed)
            tmux.keys("Enter")
            lines = tmux.wait_for(lambda ls: any(ln.startswith("call ") for ln in ls), 2.0)
            text = "\n".join(lines)
            assert "model" in text and "claude-sonnet-4-5" in text and "provider" in text
            tmux.keys("End")
            # the last lines are the response body the fake API answered ("hi"), after the request's
            lines = tmux.wait_for(lambda ls: any('"text": "hi"' in ln for ln in ls), 3.0)
            assert "sk-ant-api03" not in tmux.text() and "loading" not in tmux.text()
            tmux.keys("Escape")
            tmux.wait_for(lambda ls: ls[2].startswith("TIME "), 2.0)
            # s: a group member may not control capture; the dashboard says so
            tmux.keys("s")
            tmux.wait_for(lambda ls: ls[23].startswith("stop: not permitted (needs root or polkit io.agtap.manage)"),
                          3.0)
            # the service stops: a banner, the rows stay
            assert dm.stop() == 0, dm.err
            lines = tmux.wait_for(lambda ls: any("agtap service is not running" in ln for ln in ls), 3.0)
            assert "not running" in lines[0] and len(_rows(lines)) == 2
            # it starts again: the banner goes, its calls flow
            dm = _daemon(d2, bus, calls=1)
            lines = tmux.wait_for(lambda ls: not any("not running" in ln for ln in ls) and len(_rows(ls)) == 3, 6.0)
            dm.proc.send_signal(signal.SIGUSR1)
            tmux.wait_for(lambda ls: len(_rows(ls)) == 4, 2.0)
            # resize: still a clean screen at 100 columns (provider column appears) and back
            tmux.resize(100, 30)
            tmux.wait_for(lambda ls: any("PROVIDER" in ln for ln in ls), 2.0)
            tmux.resize(80, 24)
            tmux.wait_for(lambda ls: not any("PROVIDER" in ln for ln in ls) and ls[2].startswith("TIME"), 2.0)
            # q quits with 0
            tmux.keys("q")
            tmux.wait_for(lambda ls: any(ln.strip() == "EXIT=0" for ln in ls), 3.0)
        finally:
            tmux.kill()
            dm.stop()
