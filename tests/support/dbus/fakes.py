"""The one stand-in the service tests need: loading BPF is the capture tier's job (tests/bpf),
so the service tests drive a FakeTracer that replays crafted Chunks (`anthropic_exchange`)
through `on_item` from its poll thread, exactly as the real one does. Everything after it (the
real Pipeline, sinks, D-Bus object) is the real code.
"""

from __future__ import annotations

import json
import threading
import time

from agtap.capture.chunk import CaptureStats, Chunk, ConnClosed, Direction
from agtap.capture.connid import ConnId
from tests.support.harness import chunk

API_KEY = "sk-ant-api03-SECRET-must-not-leak"


def anthropic_exchange(conn: ConnId = ConnId.tls(4242, 0x7F00), pid: int = 4242, proc: str = "python3",
                       model: str = "claude-sonnet-4-5", in_tok: int = 12, out_tok: int = 34,
                       error: str | None = None) -> list:
    """One non-streaming Messages API exchange as chunks, then the connection's close.

    error: the API's error type (e.g. "overloaded_error"): a 529 with the documented error body
    (https://docs.anthropic.com/en/api/errors) instead of the message."""
    body = json.dumps({"model": model, "max_tokens": 64,
                       "messages": [{"role": "user", "content": "hello"}]}).encode()
    req = (b"POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\nContent-Type: application/json\r\n"
           b"x-api-key: " + API_KEY.encode() + b"\r\nanthropic-version: 2023-06-01\r\n"
           b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    if error:
        status = b"529 Overloaded" if error == "overloaded_error" else b"400 Bad Request"
        rbody = json.dumps({"type": "error", "error": {"type": error, "message": "Overloaded"}}).encode()
    else:
        status = b"200 OK"
        rbody = json.dumps({"id": "msg_01", "type": "message", "role": "assistant", "model": model,
                            "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
                            "usage": {"input_tokens": in_tok, "output_tokens": out_tok}}).encode()
    resp = (b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(rbody)).encode() + b"\r\n\r\n" + rbody)
    t0, w0 = time.monotonic_ns(), time.time_ns()

    def at(d, data, dt):
        return chunk(d, data, t0 + dt, conn=conn, wall_ns=w0 + dt, pid=pid, proc=proc, exe="/usr/bin/python3")
    return [at(Direction.EGRESS, req, 0), at(Direction.INGRESS, resp, 50_000_000),
            ConnClosed(conn=conn, ts_ns=t0 + 60_000_000)]


class FakeTracer:
    """The Tracer API (agtap/capture/__init__.py) without BPF; `feed()` queues items for poll()."""

    instances: list["FakeTracer"] = []
    fail_start: str | None = None          # set to make start() raise like a CaptureError
    fail_exit_status: int | None = None    # ... with this exit_status (BpfRefused: 3)
    start_delay: float = 0.0               # seconds start() takes (BCC compiles for a while)
    stop_delay: float = 0.0                # seconds stop() takes (a stuck detach)

    def __init__(self, config, on_item, log):
        self.config, self.on_item, self.log = config, on_item, log
        self.queue: list = []
        self.lock = threading.Lock()
        self.started = self.stopped = False
        self.filters = (list(config.pids), list(config.comms))
        self.ignored: list[str] = []
        self._stats = CaptureStats(lost_records=0)
        FakeTracer.instances.append(self)

    def start(self):
        time.sleep(FakeTracer.start_delay)
        if FakeTracer.fail_start:
            e = RuntimeError(FakeTracer.fail_start)
            e.fix = "apt-get install linux-headers-cloud-amd64"
            if FakeTracer.fail_exit_status is not None:
                e.exit_status = FakeTracer.fail_exit_status
            raise e
        self.started = True

    def feed(self, items):
        with self.lock:
            self.queue.extend(items)

    def poll(self, timeout_ms):
        with self.lock:
            items, self.queue = self.queue, []
        if not items:
            time.sleep(timeout_ms / 1000)
        for it in items:
            self._stats.chunks += isinstance(it, Chunk)
            self._stats.bytes += len(getattr(it, "data", b""))
            self.on_item(it)

    def set_filter(self, pids, comms):
        self.filters = (list(pids), list(comms))

    def ignore_conn(self, conn):
        self.ignored.append(conn)

    def stats(self):
        return self._stats

    @property
    def targets(self):
        return ["/usr/lib/x86_64-linux-gnu/libssl.so.3", "/usr/bin/node"] if self.started else []

    def stop(self):
        time.sleep(FakeTracer.stop_delay)
        self.stopped, self.started = True, False
