"""Stand-ins for the parts the service tests cannot run here.

FakeTracer: loading BPF is the capture tier's job (tests/bpf), so the service
tests drive a tracer that replays crafted Chunks through `on_item` from its
poll thread, exactly as the real one does.

StubPipeline: used ONLY while agtap.pipeline.Pipeline still raises
NotImplementedError (it is written in parallel); `pipeline_factory()` picks
the real one as soon as it exists. The stub turns one request/response pair
per connection into a Call, enough for the service's plumbing.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

from agtap.call import KIND_LLM, Call, rfc3339
from agtap.capture.chunk import CaptureStats, Chunk, ConnClosed, Direction
from agtap.capture.connid import ConnId
from tests.support.harness import chunk

API_KEY = "sk-ant-api03-SECRET-must-not-leak"


def anthropic_exchange(conn: ConnId = ConnId.tls(4242, 0x7F00), pid: int = 4242, proc: str = "python3",
                       model: str = "claude-sonnet-4-5", in_tok: int = 12, out_tok: int = 34) -> list:
    body = json.dumps({"model": model, "max_tokens": 64,
                       "messages": [{"role": "user", "content": "hello"}]}).encode()
    req = (b"POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\nContent-Type: application/json\r\n"
           b"x-api-key: " + API_KEY.encode() + b"\r\nanthropic-version: 2023-06-01\r\n"
           b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    rbody = json.dumps({"id": "msg_01", "type": "message", "role": "assistant", "model": model,
                        "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
                        "usage": {"input_tokens": in_tok, "output_tokens": out_tok}}).encode()
    resp = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
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


class StubPipeline:
    def __init__(self, emit, *, ignore_conn=None):
        self.emit = emit
        self.open: dict[str, Call] = {}
        self.stats = type("S", (), {"parse_errors": 0, "conns_open": 0})()

    def feed(self, item):
        if isinstance(item, ConnClosed):
            return
        head, _, body = item.data.partition(b"\r\n\r\n")
        if item.direction == Direction.EGRESS:
            req = json.loads(body)
            self.open[item.conn] = Call(ts=rfc3339(item.wall_ns), id=uuid.uuid4().hex, pid=item.pid,
                                        proc=item.proc, provider="anthropic", server_address="api.anthropic.com",
                                        kind=KIND_LLM, model=req.get("model"), start_ns=item.ts_ns,
                                        request_bytes=len(item.data), transport="tls")
            return
        call = self.open.pop(item.conn, None)
        if call is None:
            return
        resp = json.loads(body)
        call.input_tokens = resp["usage"]["input_tokens"]
        call.output_tokens = resp["usage"]["output_tokens"]
        call.stop_reason = resp.get("stop_reason")
        call.latency_ms = (item.ts_ns - call.start_ns) / 1e6
        call.response_bytes = len(item.data)
        call.http_status = 200
        self.emit(call)

    def expire(self, now_ns):
        pass

    def flush(self):
        for call in self.open.values():
            call.incomplete, call.incomplete_reason = True, "shutdown"
            self.emit(call)
        self.open.clear()


def pipeline_factory():
    """The real Pipeline if it is implemented yet, else StubPipeline (see the module doc)."""
    from agtap.pipeline import Pipeline
    try:
        Pipeline(lambda c: None, ignore_conn=None)
        return lambda emit, ignore_conn: Pipeline(emit, ignore_conn=ignore_conn)
    except NotImplementedError:
        return lambda emit, ignore_conn: StubPipeline(emit, ignore_conn=ignore_conn)
