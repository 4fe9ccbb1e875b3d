"""The BPF tier: the real tracer on the real kernel, as root.

`tracer_run(*flags)` starts `agtap record FILE` (the real daemon binary, a
process of its own) and returns a handle; `.stop()` sends SIGINT and returns
the recorded items. Tests then run official clients against the fake API of
tests/support and compare what the tracer saw with what crossed the wire.

This tier does not skip: not root (or BPF not loadable) is a failure.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from agtap.capture.chunk import Chunk, ConnClosed, Direction
from agtap.capture.recording import read

REPO = Path(__file__).resolve().parents[2]
AGTAP = [sys.executable, "-m", "agtap.cli"]


@pytest.fixture
def _need_root():
    if os.geteuid() != 0:
        pytest.fail("the BPF tier needs root: run 'sudo make test-bpf'")


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

        threading.Thread(target=pump, daemon=True).start()
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


@pytest.fixture
def tracer_run(tmp_path, _need_root):
    runs: list[TracerRun] = []

    def start(*flags: str) -> TracerRun:
        r = TracerRun(list(flags), tmp_path)
        runs.append(r)
        return r

    yield start
    for r in runs:
        if r.proc.poll() is None:
            r.proc.kill()
            r.proc.wait()


class DaemonRun:
    """`agtap` in the foreground (the real daemon: tracer, pipeline, sinks), ready when it says READY=1."""

    def __init__(self, flags: list[str], tmp: Path, env: dict[str, str] | None = None):
        import socket as _socket
        self.dir = tmp
        self.log = tmp / "log" / "events.jsonl"
        self.bodies = tmp / "bodies"
        self.log.parent.mkdir(exist_ok=True)
        sock_path = tmp / "notify.sock"
        self.notify = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)
        self.notify.bind(str(sock_path))
        self.notify.settimeout(120)
        env = dict(os.environ, **(env or {}), NOTIFY_SOCKET=str(sock_path))
        self.stderr_path = tmp / "daemon.stderr"
        self.proc = subprocess.Popen([*AGTAP, "--log", str(self.log), "--bodies-dir", str(self.bodies),
                                      "--bus", "none", "--no-stdout", *flags], cwd=REPO, env=env,
                                     stdout=subprocess.DEVNULL, stderr=open(self.stderr_path, "w"))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                msg = self.notify.recv(4096).decode()
            except OSError:
                break
            if "READY=1" in msg.split("\n"):
                self.messages = [msg]
                threading.Thread(target=self._drain, daemon=True).start()
                return
        self.proc.kill()
        raise AssertionError("the daemon never said READY=1:\n" + self.stderr_path.read_text())

    def _drain(self) -> None:
        # keep reading the notify socket, as systemd does (STATUS= after every call)
        self.notify.settimeout(None)
        while True:
            try:
                self.messages.append(self.notify.recv(4096).decode())
            except OSError:
                return

    def events(self, pid: int | None = None, n: int | None = None, timeout: float = 10) -> list[dict]:
        """Events in the log (for one pid); with n, wait until there are at least n."""
        import json
        deadline = time.monotonic() + timeout
        while True:
            evs = []
            if self.log.exists():
                for line in self.log.read_text().splitlines():
                    e = json.loads(line)
                    if pid is None or e["pid"] == pid:
                        evs.append(e)
            if n is None or len(evs) >= n or time.monotonic() > deadline:
                return evs
            time.sleep(0.1)

    def wait_stderr(self, text: str, timeout: float = 120) -> str:
        """The first line of the daemon's log containing `text`, waiting for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.stderr_path.read_text().splitlines():
                if text in line:
                    return line
            time.sleep(0.2)
        raise AssertionError(f"the daemon never logged {text!r}:\n" + self.stderr_path.read_text()[-4000:])

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()      # never leave a tracer behind
            self.proc.wait()
            raise AssertionError("the daemon did not exit within 30 s of SIGTERM")
        finally:
            self.notify.close()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, _need_root_module):
    d = DaemonRun([], tmp_path_factory.mktemp("agtapd"))
    yield d
    if d.proc.poll() is None:
        d.stop()


@pytest.fixture(scope="module")
def _need_root_module():
    if os.geteuid() != 0:
        pytest.fail("the BPF tier needs root: run 'sudo make test-bpf'")
