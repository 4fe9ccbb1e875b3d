"""A tmux server of our own (private socket) running one pane, for driving agtap-tui like a user."""

from __future__ import annotations

import shlex
import subprocess
import time


class Tmux:
    def __init__(self, name: str, width: int = 80, height: int = 24):
        self.sock = name
        self.width, self.height = width, height

    def _run(self, *args: str, check: bool = True) -> str:
        r = subprocess.run(["tmux", "-L", self.sock, *args], capture_output=True, text=True, check=check)
        return r.stdout

    def start(self, argv: list[str], env: dict[str, str]) -> "Tmux":
        """Run argv in the pane; when it ends the pane prints EXIT=<code> and stays."""
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        cmd = f"env {exports} {shlex.join(argv)}; echo EXIT=$?; sleep 600"
        self._run("-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", str(self.width), "-y", str(self.height),
                  cmd)
        return self

    def keys(self, *keys: str) -> None:
        self._run("send-keys", "-t", "t", *keys)

    def resize(self, width: int, height: int) -> None:
        self._run("resize-window", "-t", "t", "-x", str(width), "-y", str(height))

    def screen(self) -> list[str]:
        return self._run("capture-pane", "-p", "-t", "t").split("\n")

    def text(self) -> str:
        return "\n".join(self.screen())

    def wait_for(self, pred, timeout: float = 5.0) -> list[str]:
        """Poll the pane until pred(lines) is true; the lines. AssertionError (with the screen) on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.screen()
            if pred(lines):
                return lines
            if time.monotonic() > deadline:
                raise AssertionError("screen never matched; last screen:\n" + "\n".join(lines))
            time.sleep(0.05)

    def kill(self) -> None:
        self._run("kill-server", check=False)
