"""agtap-tui in a real terminal (tmux) against the real service (FakeTracer, no BPF) on a private bus.

No root needed for the first two. Checks what only a terminal shows: a hostile model name does not
retitle the terminal, colours degrade to bold/reverse on a monochrome terminal, a service that
starts after the dashboard is picked up, and (as root, with the shipped policy) one that turns out
to refuse this user ends the dashboard with the one line and exit 4.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

from tests.support.dbus.bus import OUTSIDER, PrivateBus
from tests.support.dbus.procs import PY, Daemon, env_for
from tests.support.paths import REPO
from tests.support.tui.service import Service
from tests.support.tui.tmux import Tmux

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is in setup/apt.txt")

SGR = re.compile(r"\x1b\[([0-9;]*)m")
COLOUR_CODES = set(range(30, 39)) | set(range(40, 49)) | set(range(90, 98)) | set(range(100, 108))


def colour_codes(raw: str) -> list[str]:
    """SGR sequences that set a colour (not 39/49, which only reset to the default)."""
    return [m.group(0) for m in SGR.finditer(raw)
            if any(p.isdigit() and int(p) in COLOUR_CODES for p in m.group(1).split(";"))]


def _tui(bus, term):
    t = Tmux(f"agtap-tui-t-{os.getpid()}-{term}")
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "LANG": "C.UTF-8", "TERM": term, "TZ": "UTC"}
    return t.start([sys.executable, "-m", "agtap.tui.app", "--bus", "session", "--address", bus.address], env)


def test_service_started_later_hostile_names_and_colour(tmp_path):
    with PrivateBus(session=True) as bus, Service(bus) as svc:
        t = _tui(bus, "xterm-256color")
        try:
            t.wait_for(lambda ls: any("agtap service is not running" in ln for ln in ls), 5)
            svc.start()
            t.wait_for(lambda ls: "capturing" in ls[0], 5)
            svc.feed(model="\x1b]0;pwn\x07claude-x", proc="\x1b[2Jevil")
            lines = t.wait_for(lambda ls: any("claude-x" in ln for ln in ls), 5)
            row = next(ln for ln in lines if "claude-x" in ln)
            assert re.match(r"\d\d:\d\d:\d\d  evil\[4242\]    claude-x ", row), row
            title = subprocess.run(["tmux", "-L", t.sock, "display", "-p", "-t", "t", "#{pane_title}"],
                                   capture_output=True, text=True).stdout
            assert "pwn" not in title
            coloured = subprocess.run(["tmux", "-L", t.sock, "capture-pane", "-e", "-p", "-t", "t"],
                                      capture_output=True, text=True).stdout
            assert colour_codes(coloured), "a colour terminal gets colours"
            t.keys("q")
            t.wait_for(lambda ls: any(ln.strip() == "EXIT=0" for ln in ls), 3)
        finally:
            t.kill()


def test_monochrome_terminal_gets_no_colour_codes():
    with PrivateBus(session=True) as bus, Service(bus) as svc:
        svc.start()
        t = _tui(bus, "vt100")
        try:
            svc.feed(error="overloaded_error")               # an error row: red on a colour terminal
            lines = t.wait_for(lambda ls: any("claude-sonnet-4-5" in ln for ln in ls), 5)
            assert any(ln.rstrip().endswith(" error:o…") for ln in lines), lines   # error:overloaded_error, cut
            raw = subprocess.run(["tmux", "-L", t.sock, "capture-pane", "-e", "-p", "-t", "t"],
                                 capture_output=True, text=True).stdout
            assert colour_codes(raw) == [], repr(raw[:400])
            assert "\x1b[7m" in raw or "\x1b[1m" in raw  # reverse/bold stand in for colour
            t.keys("q")
            t.wait_for(lambda ls: any(ln.strip() == "EXIT=0" for ln in ls), 3)
        finally:
            t.kill()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the shipped policy, a user to switch to")
def test_denied_when_the_service_appears_later_ends_with_the_one_line_and_4(users):
    with PrivateBus() as bus, tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o755)
        env = {k: v for k, v in env_for(bus.env()).items() if k in ("DBUS_SYSTEM_BUS_ADDRESS", "PYTHONPATH", "PATH")}
        t = Tmux(f"agtap-tui-t-{os.getpid()}-denied").start(
            ["runuser", "-u", OUTSIDER, "--", PY, "-m", "agtap.tui.app"], {**env, "LANG": "C.UTF-8", "TERM": "xterm"})
        dm = None
        try:
            t.wait_for(lambda ls: any("agtap service is not running" in ln for ln in ls), 5)
            dm = Daemon(d, bus.env()).ready()
            lines = t.wait_for(lambda ls: any(ln.strip() == "EXIT=4" for ln in ls), 5)
            text = "\n".join(lines)
            assert ("agtap-tui: access denied: add yourself to group agtap: sudo usermod -aG agtap $USER, "
                    "then log in again") in text.replace("\n", "")
            assert "Traceback" not in text
        finally:
            t.kill()
            if dm is not None:
                assert dm.stop() == 0, dm.err
