"""One HTTP/2 connection: every stream is an Exchange, fed to the same providers as HTTP/1.1.

The wire layer (agtap.wire.http2) reassembles frames and decodes header blocks;
this driver maps streams to exchanges: the request's pseudo-headers become the
request line (`:method`, `:path`; `:authority` is the server address), the
response's `:status` the status line, DATA the bodies, END_STREAM their ends.
RST_STREAM ends a call incomplete with the error code; GOAWAY ends the streams
the server says it never processed. Streams no provider wants keep no state.

An HTTP/2 connection carries many exchanges at once, so `ignore_conn` (stop
copying the connection until its next request line) is never called here;
`ignore_stream` is, for each stream no provider wants: the kernel then stops
copying that stream's DATA (its frames come with length 0, bpf/h2.h).
"""

from __future__ import annotations

import base64

from agtap.capture.connid import ConnId
from agtap.drivers.context import DriverContext
from agtap.drivers.exchange import IGNORED, PENDING, Exchange, McpSessions, classify_head
from agtap.providers.base import Origin, Request
from agtap.providers.mcp import McpSession
from agtap.wire.http1 import HttpHead
from agtap.wire.http2 import HPACK_UNKNOWN, HTTP2_SETTINGS_HEADER, H2Connection, error_name

MAX_STREAMS = 256   # open streams with an exchange, per connection (a peer's SETTINGS_MAX_CONCURRENT_STREAMS
                    # is 100..256 in practice); past it the oldest ends "evicted: too many streams"


def _pseudo(headers: list[tuple[str, str]], name: str) -> str:
    for k, v in headers:
        if k == name:
            return v
        if not k.startswith(":"):
            break   # pseudo-headers come first (RFC 9113 §8.3)
    return ""


class H2Conn(McpSessions):
    kind = "http2"
    http_version = "2"

    def __init__(self, conn_id: ConnId, ctx: DriverContext, *, late: bool = False):
        self.id = conn_id
        self.ctx = ctx
        self.limits = ctx.limits
        self.stats = ctx.stats
        self.emit = ctx.emit
        self.late = late
        lim = ctx.limits
        self.wire = H2Connection(self, late=late, max_block=lim.max_head, max_list=4 * lim.max_head)
        self.streams: dict[int, Exchange] = {}    # client stream id -> its exchange, oldest first
        self.lowest_sid = 0                        # client streams seen: below/above these the server
        self.highest_sid = 0                       # answers a stream we never saw (joined late)
        self.origin = Origin()
        self._mcp: McpSession | None = None
        self.last_ts = 0

    @classmethod
    def upgraded(cls, http1, ex: Exchange | None, ts: int) -> "H2Conn":
        """After `101 Switching Protocols` to h2c: stream 1 is the HTTP/1.1 request that asked for it."""
        c = cls(http1.id, http1.ctx)
        c.origin, c._mcp, c.last_ts = http1.origin, http1._mcp, ts
        c.lowest_sid = c.highest_sid = 1
        if ex is not None:
            settings = ex.req.header(HTTP2_SETTINGS_HEADER)
            if settings:
                try:
                    c.wire.client_settings(base64.urlsafe_b64decode(settings + "=" * (-len(settings) % 4)))
                except ValueError:
                    pass
            if ex.kind != IGNORED:
                ex.conn = c
                c.streams[1] = ex
                if ex.call is not None:
                    ex.call.http_version = c.http_version   # its answer comes as HTTP/2
        return c

    @property
    def busy(self) -> bool:
        return bool(self.streams) or bool(self._mcp and self._mcp.pending)

    # -- input ------------------------------------------------------------------
    def egress(self, chunk, data: bytes | None = None) -> None:
        self.origin = Origin.of(chunk)
        self.wire.egress(chunk.data if data is None else data, chunk.ts_ns, chunk.wall_ns)
        if chunk.cut:
            self.wire.client.cut(chunk.ts_ns)

    def ingress(self, chunk) -> None:
        self.wire.ingress(chunk.data, chunk.ts_ns, chunk.wall_ns)
        if chunk.cut:
            self.wire.server.cut(chunk.ts_ns)

    def close(self, reason: str, ts: int) -> None:
        for sid in list(self.streams):
            self._end(sid, ts, reason)
        if self._mcp is not None:
            self._mcp.close(reason, ts)

    # -- from the wire (agtap.wire.http2.H2Connection's owner interface) ----------------------
    def h2_headers(self, from_client: bool, sid: int, headers, problem, end_stream: bool, start_ts: int,
                   start_wall: int, wire: int, ts: int) -> None:
        if from_client:
            self._request_headers(sid, headers, problem, end_stream, start_ts, start_wall, wire, ts)
        else:
            self._response_headers(sid, headers, problem, end_stream, start_ts, start_wall, wire, ts)

    def h2_data(self, from_client: bool, sid: int, data: bytes, end_stream: bool, ts: int, wire: int) -> None:
        ex = self.streams.get(sid)
        if ex is None:
            return
        if from_client:
            ex.head.wire_bytes += wire
            if data:
                self._request_body(sid, ex, data)
            if end_stream and self.streams.get(sid) is ex:
                ex.req_done = True
                self._start(sid, ex)
        elif ex.resp_head is not None:
            ex.resp_head.wire_bytes += wire
            if data:
                ex.response_body(data, ts)
            if end_stream:
                self._end(sid, ts, None)

    def h2_reset(self, from_client: bool, sid: int, code: int, ts: int) -> None:
        ex = self.streams.get(sid)
        if ex is None:
            return
        if ex.stream_done:   # the provider's last event came: the client had the whole answer
            self._end(sid, ts, None)
        else:
            self._end(sid, ts, f"stream_reset: {error_name(code)} by {'client' if from_client else 'server'}")

    def h2_goaway(self, from_client: bool, last_sid: int, code: int, ts: int) -> None:
        if from_client:
            return   # the client stops accepting pushes: nothing of ours
        for sid in [s for s in self.streams if s > last_sid]:
            self._end(sid, ts, f"goaway: {error_name(code)} (stream not processed)")

    def h2_stream_lost(self, from_client: bool, sid: int, reason: str, ts: int) -> None:
        if sid in self.streams:
            self._end(sid, ts, reason)

    def h2_problem(self, from_client: bool, reason: str, ts: int) -> None:
        self.stats.parse_errors += 1

    def h2_broken(self, from_client: bool, reason: str, ts: int) -> None:
        """One direction's bytes are no longer frames: every open call ends with the reason."""
        self.stats.parse_errors += 1
        for sid in list(self.streams):
            self._end(sid, ts, "parse_error: " + reason)
        if self.late and from_client:
            # joined late on bytes that looked like frames and are not: likely not HTTP/2 at all;
            # the kernel may stop copying it (S_H2_LATE can be ignored, S_H2 cannot)
            self.ctx.ignore_conn(self.id)

    # -- requests -----------------------------------------------------------------
    def _request_headers(self, sid, headers, problem, end_stream, start_ts, start_wall, wire, ts) -> None:
        ex = self.streams.get(sid)
        if ex is not None:   # trailers of the request
            ex.head.wire_bytes += wire
            if problem:
                self._count(problem)
                ex.mark(problem)
            if end_stream:
                ex.req_done = True
                self._start(sid, ex)
            return
        if sid > self.highest_sid:
            self.highest_sid = sid
        if not self.lowest_sid or sid < self.lowest_sid:
            self.lowest_sid = sid
        if headers is None:
            # Not guessed: without its headers nobody can say what this request was.
            self._count(problem)
            return
        head = HttpHead(True)
        head.method, head.target, head.version = _pseudo(headers, ":method"), _pseudo(headers, ":path"), "HTTP/2"
        head.headers, head.start_ns, head.start_wall, head.wire_bytes = headers, start_ts, start_wall, wire
        req = Request(head.method, head.target, headers)
        kind, mod = classify_head(req)
        if kind == IGNORED:
            self.stats.ignored_exchanges += 1
            self.ctx.ignore_stream(self.id, sid)   # the kernel stops copying its DATA (bpf/h2.h)
            return
        if len(self.streams) >= MAX_STREAMS:
            # A peer that never ends its streams must not grow state without bound.
            self.stats.parse_errors += 1
            self._end(next(iter(self.streams)), start_ts, "evicted: too many http2 streams")
        ex = Exchange(self, head, req, kind, mod, self.origin)
        self.streams[sid] = ex
        if end_stream:
            ex.req_done = True
            self._start(sid, ex)

    def _request_body(self, sid: int, ex: Exchange, data: bytes) -> None:
        ex.request_body(data)
        if ex.kind == PENDING and ex.req_kept.size == len(data) and not ex.req.header("content-encoding"):
            first = ex.first_body_bytes()
            if first and first not in (b"{", b"["):
                self._drop(sid)

    def _start(self, sid: int, ex: Exchange) -> None:
        ex.start()
        if ex.kind == IGNORED:   # PENDING, and the body was not JSON-RPC
            self._drop(sid)

    def _drop(self, sid: int) -> None:
        self.streams.pop(sid, None)
        self.stats.ignored_exchanges += 1
        self.ctx.ignore_stream(self.id, sid)

    # -- responses ----------------------------------------------------------------
    def _response_headers(self, sid, headers, problem, end_stream, start_ts, start_wall, wire, ts) -> None:
        ex = self.streams.get(sid)
        if ex is None:
            if sid & 1 and (not self.highest_sid or sid < self.lowest_sid or sid > self.highest_sid):
                self.stats.unmatched_responses += 1   # a request sent before capture began
            if problem:
                self._count(problem)
            return
        if headers is None:
            self._count(problem)
            self._end(sid, ts, problem)
            return
        if ex.resp_head is not None:   # trailers
            ex.resp_head.wire_bytes += wire
            if end_stream:
                self._end(sid, ts, None)
            return
        status = _pseudo(headers, ":status")
        if not status.isdigit() or len(status) != 3:
            self.stats.parse_errors += 1
            self._end(sid, ts, "parse_error: http2 response without a valid :status")
            return
        if 100 <= int(status) < 200:
            return   # interim (100 Continue, 103 Early Hints): the final head follows
        head = HttpHead(False)
        head.version, head.status, head.headers = "HTTP/2", int(status), headers
        head.start_ns, head.start_wall, head.wire_bytes = start_ts, start_wall, wire
        if not ex.started:
            ex.start()   # answered before the request ended (e.g. 413): go with what we have
        if ex.kind == IGNORED:
            self._drop(sid)
            return
        ex.response_head(head)
        if end_stream:
            self._end(sid, ts, None)

    def _end(self, sid: int, ts: int, reason: str | None) -> None:
        ex = self.streams.pop(sid, None)
        if ex is None:
            return
        if reason:
            ex.mark(reason)
        if not ex.started:
            ex.start()
        if ex.kind == IGNORED:
            return
        ex.response_end(ts, reason)

    def _count(self, problem: str | None) -> None:
        if problem == HPACK_UNKNOWN:
            self.stats.h2_headers_unknown += 1
        else:
            self.stats.parse_errors += 1
