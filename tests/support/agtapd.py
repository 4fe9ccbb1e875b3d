"""The real agtap as a process of its own, for the BPF tier (root, the real kernel).

    TracerRun   `agtap record FILE [flags]`: `.stop()` sends SIGINT and returns the recorded items
    Agtapd      `agtap` in the foreground (tracer, pipeline, sinks; no bus), ready when it says
                READY=1 on a NOTIFY_SOCKET the test reads, as systemd would

tests/bpf/conftest.py wraps them in fixtures (`tracer_run`, `agtapd`, `daemon`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

from agtap.capture.chunk import Chunk, ConnClosed, Direction
from agtap.capture.recording import read

from .paths import REPO

AGTAP = [sys.executable, "-m", "agtap.cli"]


def wait_until(pred, timeout: float, step: float = 0.1):
    """pred()'s first true value, or its last value once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


def read_lines(paths) -> list[dict]:
    """Every line of every file, each parsed (a torn or half-written line fails here)."""
    out = []
    for p in paths:
        data = Path(p).read_bytes()
        assert not data or data.endswith(b"\n"), f"{p} ends mid-line"
        for n, line in enumerate(data.splitlines()):
            try:
                out.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"{p}:{n + 1} is not JSON: {line[:200]!r}") from None
    return out


def log_files(log: Path) -> list[Path]:
    """The event log and its rotated generations."""
    return sorted(p for p in log.parent.iterdir() if p.name == log.name or p.name.startswith(log.name + "."))


def body_files(bodies: Path) -> list[Path]:
    return sorted(p for p in bodies.rglob("*") if p.is_file()) if bodies.exists() else []


class TracerRun:
    def __init__(self, flags: list[str], tmp: Path):
        self.path = tmp / f"rec-{time.monotonic_ns()}.jsonl"
        self.proc = subprocess.Popen([*AGTAP, "record", str(self.path), *flags], cwd=REPO,
                                     stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        self.stderr: list[str] = []
        ready = threading.Event()

        def pump():
            for line in self.proc.stderr:
                self.stderr.append(line)
                if "recording to" in line:
                    ready.set()
            ready.set()

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()
        if not ready.wait(120) or self.proc.poll() is not None:
            self.proc.kill()
            raise AssertionError("agtap record did not start:\n" + "".join(self.stderr))
        self.items: list = []

    def quiesce(self, mine, quiet: float = 1.0, timeout: float = 30.0) -> None:
        """Wait until no new item for which mine(item) is true has been recorded for `quiet`
        seconds (each item is flushed as it is written): what the test's programs did has all
        come through, however loaded the machine, whatever else it runs meanwhile."""
        deadline = time.monotonic() + timeout
        count, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            try:
                n = sum(1 for i in read(str(self.path)) if mine(i))
            except Exception:   # not created yet, or a line being written
                n = -2
            if n != count:
                count, since = n, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            time.sleep(0.2)
        raise AssertionError(f"items kept coming for {timeout} s")

    def stop(self, settle: float = 0.5) -> list:
        time.sleep(settle)   # let the ring buffer drain
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        rc = self.proc.wait(30)
        self.stop_seconds = time.monotonic() - t0
        self._pump.join(10)  # its last lines (the summary) are read by now
        assert rc == 0, "".join(self.stderr)
        self.items = list(read(str(self.path)))
        self.assert_no_api_key()
        return self.items

    def assert_no_api_key(self) -> None:
        """A recording is meant for bug reports: no test client's API key may be in it."""
        from tests.support import API_KEYS
        blob = self.path.read_bytes() + b"".join(c.data for c in self.chunks())
        for kind, key in API_KEYS.items():
            assert key.encode() not in blob, f"{kind}'s API key is in the recording"

    def chunks(self, pid: int | None = None) -> list[Chunk]:
        return [i for i in self.items if isinstance(i, Chunk) and (pid is None or i.pid == pid)]

    def streams(self, pid: int) -> dict[str, dict[Direction, bytes]]:
        """conn -> {EGRESS: bytes, INGRESS: bytes} for one process, in capture order."""
        out: dict[str, dict[Direction, bytearray]] = defaultdict(lambda: {Direction.EGRESS: bytearray(),
                                                                         Direction.INGRESS: bytearray()})
        for c in self.chunks(pid):
            out[c.conn][c.direction] += c.data
        return {k: {d: bytes(b) for d, b in v.items()} for k, v in out.items()}

    def closes(self) -> list[ConnClosed]:
        return [i for i in self.items if isinstance(i, ConnClosed)]


class Agtapd:
    """`agtap` in the foreground (the real daemon: tracer, pipeline, sinks; `--bus none`).

    Ready when it says READY=1 on the notify socket; every later datagram (STATUS= after each
    call) is kept in `.messages`. With expect_ready=False a daemon that exits first is not a
    failure: `.ready` says which happened. `stdout`: a file for its stdout (default: --no-stdout).
    """

    def __init__(self, tmp: Path, *flags: str, log: Path | None = None, bodies: Path | None = None,
                 env: dict | None = None, stdout: Path | None = None, expect_ready: bool = True,
                 timeout: float = 180):
        self.dir = tmp
        self.log = log or tmp / "log" / "events.jsonl"
        self.bodies = bodies or tmp / "bodies"
        if log is None:
            self.log.parent.mkdir(exist_ok=True)
        sock_path = tmp / f"notify-{time.monotonic_ns()}.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(sock_path))
        self.notify.settimeout(1)
        self.stderr_path = tmp / f"daemon-{time.monotonic_ns()}.stderr"
        self.stdout_path = stdout
        argv = [*AGTAP, "--log", str(self.log), "--bodies-dir", str(self.bodies),
                "--bus", "none", *([] if stdout else ["--no-stdout"]), *flags]
        self.proc = subprocess.Popen(argv, cwd=REPO, env=dict(os.environ, NOTIFY_SOCKET=str(sock_path), **(env or {})),
                                     stdout=open(stdout, "w") if stdout else subprocess.DEVNULL,
                                     stderr=open(self.stderr_path, "w"))
        self.ready = False
        self.messages: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                msg = self.notify.recv(4096).decode()
            except OSError:
                continue
            self.messages.append(msg)
            if "READY=1" in msg.split("\n"):
                self.ready = True
                threading.Thread(target=self._drain, daemon=True).start()
                return
        if expect_ready:
            self.proc.kill()
            raise AssertionError("the daemon never said READY=1:\n" + self.stderr())

    def _drain(self) -> None:
        # keep reading the notify socket, as systemd does
        self.notify.settimeout(None)
        while True:
            try:
                self.messages.append(self.notify.recv(4096).decode())
            except OSError:
                return

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def events(self, pid: int | None = None, n: int | None = None, timeout: float = 30) -> list[dict]:
        """Events in the log and its rotated files (for one pid); with n, wait up to `timeout`
        seconds until there are at least n."""
        def now() -> list[dict]:
            evs = read_lines(log_files(self.log)) if self.log.parent.exists() else []
            return [e for e in evs if pid is None or e["pid"] == pid]
        def enough() -> list[dict] | None:
            evs = now()
            return evs if len(evs) >= n else None
        return now() if n is None else wait_until(enough, timeout) or now()

    def wait_stderr(self, text: str, timeout: float = 120) -> str:
        """The first line of the daemon's log containing `text`, waiting for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.stderr().splitlines():
                if text in line:
                    return line
            time.sleep(0.2)
        raise AssertionError(f"the daemon never logged {text!r}:\n" + self.stderr()[-4000:])

    def not_probed(self, *runs: tuple[list, str]) -> list[str]:
        """Run each command (argv, what the daemon logs when it decides to leave that executable
        alone) until the daemon has logged it; the lines, once checked that the daemon neither
        probed nor attached any of the executables."""
        procs = [subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for argv, _ in runs]
        try:
            lines = [self.wait_stderr(text) for _, text in runs]
        finally:
            for p in procs:
                p.kill()
                p.wait()
        log = self.stderr()
        for argv, _ in runs:
            assert f"probing {argv[0]}" not in log and f"attached: {argv[0]}" not in log, argv[0]
        return lines

    def stop(self) -> int:
        """SIGTERM; its exit status (the test fails if it takes more than 30 s)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()      # never leave a tracer behind
            self.proc.wait()
            raise AssertionError("the daemon did not exit within 30 s of SIGTERM") from None
        finally:
            self.notify.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(30)
        self.notify.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        try:
            self.notify.close()
        except OSError:
            pass
