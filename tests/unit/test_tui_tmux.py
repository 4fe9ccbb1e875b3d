"""agtap-tui in a real terminal (tmux) against the stand-in service on a private bus.

No root needed. Checks what only a terminal shows: a hostile model name does not
retitle the terminal, colours degrade to bold/reverse on a monochrome terminal, and
a service that starts after the dashboard is picked up.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agtap import busnames
from tests.support.tui import events
from tests.support.tui.busdaemon import BusDaemon
from tests.support.tui.tmux import Tmux

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is in setup/apt.txt")

SGR = re.compile(r"\x1b\[([0-9;]*)m")
COLOUR_CODES = set(range(30, 39)) | set(range(40, 49)) | set(range(90, 98)) | set(range(100, 108))


def colour_codes(raw: str) -> list[str]:
    """SGR sequences that set a colour (not 39/49, which only reset to the default)."""
    return [m.group(0) for m in SGR.finditer(raw)
            if any(p.isdigit() and int(p) in COLOUR_CODES for p in m.group(1).split(";"))]


class Service:
    def __init__(self, address, *flags):
        self.address, self.flags, self.proc = address, flags, None

    def start(self):
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.support.tui.fake_service", self.address,
                                      *self.flags],
                                     cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)

    def emit(self, ev):
        subprocess.run(["busctl", f"--address={self.address}", "call", busnames.BUS_NAME, busnames.OBJECT_PATH,
                        "io.agtap.Test", "Emit", "s", json.dumps(ev)], check=True, capture_output=True)


def _tui(bus, term):
    t = Tmux(f"agtap-tui-t-{os.getpid()}-{term}")
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "LANG": "C.UTF-8", "TERM": term, "TZ": "UTC"}
    return t.start([sys.executable, "-m", "agtap.tui.app", "--bus", "session", "--address", bus.address], env)


def test_service_started_later_hostile_names_and_colour(tmp_path):
    with BusDaemon() as bus:
        svc = Service(bus.address)
        t = _tui(bus, "xterm-256color")
        try:
            t.wait_for(lambda ls: any("agtap service is not running" in ln for ln in ls), 5)
            svc.start()
            t.wait_for(lambda ls: "capturing" in ls[0], 5)
            svc.emit(events.llm(0, model="\x1b]0;pwn\x07claude-x", proc="\x1b[2Jevil"))
            lines = t.wait_for(lambda ls: any("claude-x" in ln for ln in ls), 3)
            row = next(ln for ln in lines if "claude-x" in ln)
            assert row.startswith("23:37:25~ evil[4242]    claude-x ")
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
            svc.stop()


def test_monochrome_terminal_gets_no_colour_codes():
    with BusDaemon() as bus:
        svc = Service(bus.address).start()
        t = _tui(bus, "vt100")
        try:
            svc.emit(events.llm(0, stop_reason="error:overloaded_error"))
            t.wait_for(lambda ls: any("claude-sonnet-4-5" in ln for ln in ls), 5)
            raw = subprocess.run(["tmux", "-L", t.sock, "capture-pane", "-e", "-p", "-t", "t"],
                                 capture_output=True, text=True).stdout
            assert colour_codes(raw) == [], repr(raw[:400])
            assert "\x1b[7m" in raw or "\x1b[1m" in raw  # reverse/bold stand in for colour
            t.keys("q")
            t.wait_for(lambda ls: any(ln.strip() == "EXIT=0" for ln in ls), 3)
        finally:
            t.kill()
            svc.stop()


def test_denied_when_the_service_appears_later_ends_with_the_one_line_and_4():
    with BusDaemon() as bus:
        svc = Service(bus.address, "--deny-read")
        t = _tui(bus, "xterm")
        try:
            t.wait_for(lambda ls: any("agtap service is not running" in ln for ln in ls), 5)
            svc.start()
            lines = t.wait_for(lambda ls: any(ln.strip() == "EXIT=4" for ln in ls), 5)
            text = "\n".join(lines)
            assert ("agtap-tui: access denied: add yourself to group agtap: sudo usermod -aG agtap $USER, "
                    "then log in again") in text.replace("\n", "")
            assert "Traceback" not in text
        finally:
            t.kill()
            svc.stop()
