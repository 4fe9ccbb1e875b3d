"""Chunks in, calls out: wire -> providers -> Call, with nothing below it knowing BCC.

This module is the seam the service and `agtap replay` use. The pipeline is
single-threaded and never raises out of `feed`: malformed input becomes a
partial Call with `incomplete_reason` "parse_error: ..." and a counter, and a
bug anywhere below is caught per connection, counted, and that connection's
state dropped.

Layer order: capture -> wire -> providers -> drivers -> pipeline -> sinks/service.
Each connection is decided from its first bytes and given a driver: an HTTP
request line makes it HTTP/1.1 (drivers.httpconn), the HTTP/2 client preface
(or, joining late, bytes that parse as HTTP/2 frames) HTTP/2 (drivers.h2conn),
a '{' or '[' newline-delimited JSON-RPC (drivers.ipcconn: MCP stdio). Anything else is
treated as HTTP that has lost its place: it waits, cheaply, for a request line.
Drivers see only a DriverContext (limits, stats, emit, ignore_conn, shared MCP
sessions), never the Pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from agtap.call import Call
from agtap.capture.chunk import Chunk, ConnClosed, Direction
from agtap.capture.connid import ConnId
from agtap.drivers.context import DriverContext
from agtap.drivers.h2conn import H2Conn
from agtap.drivers.httpconn import HttpConn
from agtap.drivers.ipcconn import IpcConn
from agtap.providers.mcp import McpSession
from agtap.providers.pricing import PriceTable
from agtap.wire.http1 import MAX_HEAD, looks_like_request_start
from agtap.wire.http2 import PREFACE, looks_like_frames

_CLOSE_REASONS = {"closed": "connection_closed", "process_exit": "process_exit", "evicted": "evicted"}
_WS = b" \t\r\n"
MAX_MCP_SESSIONS = 1024


@dataclass(slots=True)
class PipelineStats:
    """What the pipeline counts. Every field reaches GetStats and the metrics (Controller.get_stats);
    the calls themselves (count, tokens, bytes, by provider) are counted once, by the controller."""

    parse_errors: int = 0
    conns_open: int = 0            # a gauge: connections with state now
    conns_evicted: int = 0         # dropped for a new one past Limits.max_conns (their call ends "evicted")
    conns_expired: int = 0         # idle past Limits.idle_timeout_ns (their call ends "idle_timeout")
    ignored_exchanges: int = 0     # requests no provider wanted (ignore_conn was called)
    unmatched_responses: int = 0   # responses (HTTP, JSON-RPC) with no request seen: attached mid-stream, or missed
    h2_headers_unknown: int = 0    # HTTP/2 header blocks naming HPACK entries sent before capture began: not guessed
    bodies_truncated: int = 0      # bodies past max_body (counted, kept only up to the cap)
    decompression_capped: int = 0
    internal_errors: int = 0       # exceptions caught from below (also counted in parse_errors)
    emit_errors: int = 0           # exceptions raised by the emit callback


@dataclass(slots=True)
class Limits:
    max_head: int = MAX_HEAD                      # bytes of one HTTP head
    max_body: int = 16 * 1024 * 1024              # body bytes kept per message for the bodies sink
    decompress_cap: int = 64 * 1024 * 1024        # decoded bytes per body before "decompression_cap"
    idle_timeout_ns: int = 600 * 1_000_000_000    # conns idle this long are expired
    max_conns: int = 10_000


class _Undecided:
    """A connection whose first egress bytes do not yet say what it is."""

    __slots__ = ("prefix", "last_ts")
    kind = "undecided"
    busy = False

    def __init__(self):
        self.prefix = b""
        self.last_ts = 0


class Pipeline:
    """Feed it Chunk and ConnClosed values in order; it calls `emit(call)` once per finished call.

    `ignore_conn(conn)` is called when a connection's current exchange is of no
    interest (no provider matches the request): the capture layer then stops
    copying its bytes in the kernel until the next request line.
    """

    def __init__(self, emit: Callable[[Call], None], *, ignore_conn: Callable[[ConnId], None] | None = None,
                 limits: Limits | None = None, prices: PriceTable | None = None):
        self.emit = emit
        self.ignore_conn = ignore_conn
        self.limits = limits or Limits()
        self.prices = prices if prices is not None else PriceTable()
        self.stats = PipelineStats()
        self._now = 0   # ts of the latest chunk
        self.conns: dict[ConnId, object] = {}
        self.mcp_sessions: dict[str, McpSession] = {}   # by Mcp-Session-Id, across connections
        # ignore_stream(conn, stream_id): an HTTP/2 stream of no interest; the capture layer then
        # stops copying its DATA in the kernel (frames' headers still come). Set by the service.
        self.ignore_stream: Callable[[ConnId, int], None] | None = None
        self._ctx = DriverContext(self.limits, self.stats, self._emit, ignore_conn or (lambda conn: None),
                                  self.shared_mcp_session, self._ignore_stream)

    def _ignore_stream(self, conn: ConnId, stream_id: int) -> None:
        if self.ignore_stream is not None:
            self.ignore_stream(conn, stream_id)

    # -- input -------------------------------------------------------------------
    def feed(self, item: Chunk | ConnClosed) -> None:
        conn_id = item.conn
        try:
            if isinstance(item, ConnClosed):
                self._close(conn_id, _CLOSE_REASONS.get(item.reason, item.reason or "connection_closed"),
                            item.ts_ns)
            else:
                self._chunk(item)
        except Exception as e:  # a bug below must cost one connection, never the service
            self.stats.internal_errors += 1
            self.stats.parse_errors += 1
            self._abort(conn_id, f"parse_error: internal {type(e).__name__}", getattr(item, "ts_ns", 0))
        self.stats.conns_open = len(self.conns)

    def _chunk(self, ch: Chunk) -> None:
        self._now = ch.ts_ns
        c = self.conns.get(ch.conn)
        egress = ch.direction == Direction.EGRESS or ch.direction == "egress"
        if c is None:
            if not egress and not ch.conn.is_ipc:
                return   # an answer to nothing we saw (attached mid-stream, or after an abort): no state
            if len(self.conns) >= self.limits.max_conns:
                self._evict_one(ch.ts_ns)
            c = self.conns[ch.conn] = _Undecided()
        c.last_ts = ch.ts_ns
        if c.kind == "undecided":
            decided = self._decide(ch, c, egress)
            if decided is None:
                return
            c, data = decided
            c.egress(ch, data)
            return
        if egress:
            c.egress(ch)
        else:
            c.ingress(ch)

    def _decide(self, ch: Chunk, und: _Undecided, egress: bool):
        if not egress:
            # Replies before any request: only a JSON-RPC peer on local IPC speaks first.
            if ch.conn.is_ipc and ch.data.lstrip(_WS)[:1] in (b"{", b"["):
                c = self.conns[ch.conn] = IpcConn(ch.conn, self._ctx)
                c.last_ts = ch.ts_ns
                c.ingress(ch)
            return None
        data = und.prefix + ch.data if und.prefix else ch.data
        head = data.lstrip(_WS)
        if not head:
            und.prefix = data[-16:]
            return None
        if data[:len(PREFACE)] == PREFACE[:len(data)]:
            if len(data) < len(PREFACE):
                und.prefix = data
                return None
            c = H2Conn(ch.conn, self._ctx)
        elif head[:1] in (b"{", b"["):
            c = IpcConn(ch.conn, self._ctx)
        else:
            verdict = looks_like_request_start(head[:16])
            if verdict is None and len(data) < 16:
                und.prefix = data
                return None
            if not verdict and looks_like_frames(data):
                c = H2Conn(ch.conn, self._ctx, late=True)   # HTTP/2 joined after its preface
            else:
                c = HttpConn(ch.conn, self._ctx)
                if not verdict:
                    c.resync()   # the capture layer stops copying until a request line; wait for one
        c.last_ts = ch.ts_ns
        self.conns[ch.conn] = c
        return c, data

    def _close(self, conn_id: ConnId, reason: str, ts: int) -> None:
        c = self.conns.pop(conn_id, None)
        if c is not None and c.kind != "undecided":
            c.close(reason, ts)

    def _abort(self, conn_id: ConnId, reason: str, ts: int) -> None:
        c = self.conns.pop(conn_id, None)
        if c is None or c.kind == "undecided":
            return
        try:
            c.close(reason, ts)
        except Exception:
            self.stats.internal_errors += 1

    def _evict_one(self, ts: int) -> None:
        victim = min(self.conns, key=lambda k: self.conns[k].last_ts)
        self.stats.conns_evicted += 1
        self._abort(victim, "evicted", ts)

    def shared_mcp_session(self, session_id: str) -> McpSession:
        s = self.mcp_sessions.pop(session_id, None)
        if s is None:
            if len(self.mcp_sessions) >= MAX_MCP_SESSIONS:
                oldest = next(iter(self.mcp_sessions))
                self.mcp_sessions.pop(oldest).close("evicted", 0)
            s = McpSession(self._emit, self.stats)
        self.mcp_sessions[session_id] = s   # most recently used last
        s.last_ts = self._now
        return s

    # -- time ----------------------------------------------------------------------
    def expire(self, now_ns: int) -> None:
        """Finish calls on connections idle past their timeout (incomplete "idle_timeout")."""
        limit = now_ns - self.limits.idle_timeout_ns
        for conn_id in [k for k, c in self.conns.items() if c.last_ts < limit]:
            self.stats.conns_expired += 1
            self._abort(conn_id, "idle_timeout", now_ns)
        for sid in [k for k, s in self.mcp_sessions.items() if s.last_ts < limit]:
            self.mcp_sessions.pop(sid).close("idle_timeout", now_ns)
        self.stats.conns_open = len(self.conns)

    def flush(self) -> None:
        """At shutdown: finish every open call as incomplete ("shutdown")."""
        for conn_id in list(self.conns):
            c = self.conns[conn_id]
            self._abort(conn_id, "shutdown", c.last_ts)
        for sid in list(self.mcp_sessions):
            self.mcp_sessions.pop(sid).close("shutdown", self._now)
        self.stats.conns_open = 0

    # -- output --------------------------------------------------------------------
    def _emit(self, call: Call) -> None:
        try:
            call.cost_usd = self.prices.cost(call)
        except Exception:
            self.stats.internal_errors += 1
        try:
            self.emit(call)
        except Exception:
            self.stats.emit_errors += 1
