"""Processes the service tests run: the daemon (with a NOTIFY_SOCKET the test reads) and clients as users."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.paths import PY, REPO


class NotifySocket:
    """A real unix datagram socket standing in for systemd's notify socket."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="agtap-notify-")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages: list[tuple[float, str]] = []
        self._next = 0

    def wait_for(self, line: str, timeout: float = 10.0) -> float:
        """Read on until a datagram holds `line` (e.g. "READY=1"); its arrival time.

        Messages are consumed in order, so successive waits see successive messages."""
        deadline = time.monotonic() + timeout
        while True:
            while self._next < len(self.messages):
                t, m = self.messages[self._next]
                self._next += 1
                if line in m.split("\n"):
                    return t
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {line!r} on NOTIFY_SOCKET within {timeout} s; got {self.lines()}")
            self.sock.settimeout(left)
            try:
                self.messages.append((time.monotonic(), self.sock.recv(65536).decode()))
            except socket.timeout:
                pass

    def drain(self, seconds: float) -> list[str]:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                self.messages.append((time.monotonic(), self.sock.recv(65536).decode()))
            except socket.timeout:
                break
        return self.lines()

    def lines(self) -> list[str]:
        return [ln for _, m in self.messages for ln in m.split("\n")]

    def close(self):
        self.sock.close()
        try:
            os.unlink(self.path)
            os.rmdir(self.dir)
        except OSError:
            pass


def env_for(bus_env: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    env.update(bus_env or {})
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


class Daemon:
    """tests.support.dbus.run_daemon in a subprocess, with its own notify socket."""

    def __init__(self, workdir: str, bus_env: dict[str, str] | None, *args: str, **env: str):
        self.notify = NotifySocket()
        self.workdir = workdir
        self.fifo = os.path.join(self.notify.dir, "feed")     # a private 0700 directory
        os.mkfifo(self.fifo, 0o600)
        self.env = env_for(bus_env, NOTIFY_SOCKET=self.notify.path, **env)
        self.proc = subprocess.Popen([PY, "-m", "tests.support.dbus.run_daemon", "--dir", workdir,
                                      "--feed", self.fifo, *args],
                                     cwd=REPO, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)

    def ready(self, timeout: float = 15) -> "Daemon":
        try:
            self.notify.wait_for("READY=1", timeout)
        except TimeoutError:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError(f"daemon not ready; rc={self.proc.returncode} stderr={err}") from None
        return self

    def feed(self, n: int = 1, rate: float = 0, **exchange) -> None:
        """Have the FakeTracer replay n more exchanges (fakes.anthropic_exchange(**exchange): model,
        proc, pid, in_tok, out_tok, error; "{i}" in a string: the index), `rate` a second or all at
        once; returns at once."""
        deadline = time.monotonic() + 10
        while True:
            try:
                fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:                       # ENXIO: its reader is between two opens
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the daemon does not read {self.fifo}") from None
                time.sleep(0.01)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps({"n": n, "rate": rate, **exchange}) + "\n")

    def events(self) -> list[dict]:
        p = os.path.join(self.workdir, "events.jsonl")
        if not os.path.exists(p):
            return []
        return [json.loads(x) for x in Path(p).read_text().splitlines() if x.strip()]

    def stop(self, timeout: float = 5) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.out, self.err = self.proc.communicate()
        if os.path.exists(self.fifo):
            os.unlink(self.fifo)
        self.notify.close()
        return rc


def as_user(user: str | None, argv: list[str], env: dict[str, str], timeout: float = 20,
            **kw) -> subprocess.CompletedProcess:
    cmd = (["runuser", "-u", user, "--"] if user and user != "root" else []) + argv
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, **kw)


def client_calls(user: str | None, spec: list, env: dict[str, str]) -> list[dict]:
    r = as_user(user, [PY, "-m", "tests.support.dbus.client", "calls", json.dumps(spec)], env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def ctl(user: str | None, args: list[str], env: dict[str, str], **kw) -> subprocess.CompletedProcess:
    return as_user(user, [PY, "-m", "agtap.ctl", *args], env, **kw)
