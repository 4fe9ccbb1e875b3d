"""One HTTP/1.1 connection: two framers (egress requests, ingress responses) and
the queue that pairs them, keep-alive and pipelining included.

Requests of no interest (no provider matches) are dropped at once and the
capture layer is told (`ignore_conn`), so it stops copying that exchange; both
directions then skip ahead to the next start line, keeping almost no state.
"""

from __future__ import annotations

from collections import deque

from agtap.capture.connid import ConnId
from agtap.drivers.context import DriverContext
from agtap.drivers.h2conn import H2Conn
from agtap.drivers.exchange import IGNORED, PENDING, Exchange, McpSessions, classify_head
from agtap.providers.base import Origin, Request
from agtap.providers.mcp import McpSession
from agtap.wire.http1 import HttpParser

MAX_PENDING = 64   # requests awaiting an answer on one connection


def _asks_h2c(req: Request) -> bool:
    """An `Upgrade: h2c` request (RFC 7540 §3.2): its 101 answer switches the connection to HTTP/2."""
    return "h2c" in (req.header("upgrade") or "").lower()


class HttpConn(McpSessions):
    kind = "http"
    http_version = "1.1"

    def __init__(self, conn_id: ConnId, ctx: DriverContext):
        self.id = conn_id
        self.ctx = ctx
        self.limits = ctx.limits
        self.stats = ctx.stats
        self.emit = ctx.emit
        lim = ctx.limits
        self.req = HttpParser(True, self._req_head, self._req_body, self._req_end, self._req_error, lim.max_head)
        self.resp = HttpParser(False, self._resp_head, self._resp_body, self._resp_end, self._resp_error,
                               lim.max_head)
        self.queue: deque[Exchange] = deque()   # requests whose response has not ended, oldest first
        self.cur_req: Exchange | None = None    # the request being read
        self.origin = Origin()
        self.discard_ingress = False             # after an ignored exchange, until the next request
        self._mcp: McpSession | None = None
        self.last_ts = 0
        self.h2: H2Conn | None = None            # after 101 to h2c: the HTTP/2 driver takes the connection

    @property
    def busy(self) -> bool:
        if self.h2 is not None:
            return self.h2.busy
        return bool(self.queue) or self.cur_req is not None or bool(self._mcp and self._mcp.pending)

    # -- input -----------------------------------------------------------------
    def resync(self) -> None:
        """The first bytes are not a message start (another protocol, or attached mid-stream):
        skip both directions up to the next request line and tell the capture layer."""
        self.req.abandon()
        self._ignore(None)

    def egress(self, chunk, data: bytes | None = None) -> None:
        if self.h2 is not None:
            self.h2.egress(chunk, data)
            return
        self.origin = Origin.of(chunk)
        self.req.feed(chunk.data if data is None else data, chunk.ts_ns, chunk.wall_ns)
        if chunk.cut:
            self._cut_request(chunk.ts_ns)

    def ingress(self, chunk) -> None:
        if self.h2 is not None:
            self.h2.ingress(chunk)
            return
        if self.discard_ingress:
            return
        self.resp.feed(chunk.data, chunk.ts_ns, chunk.wall_ns)
        if chunk.cut:
            self._cut_response(chunk.ts_ns)

    def close(self, reason: str, ts: int) -> None:
        """The connection ended: an until-close body ends cleanly, everything else is incomplete."""
        if self.h2 is not None:
            self.h2.close(reason, ts)
            return
        if not self.discard_ingress:
            self.resp.close(ts)
        cur = self.cur_req
        self.cur_req = None
        if cur is not None and cur not in self.queue:
            cur.req_done = False
            self.queue.append(cur)
        while self.queue:
            ex = self.queue.popleft()
            if ex.kind == IGNORED:
                continue
            ex.mark(reason)
            if not ex.started:
                ex.start()
            ex.response_end(ts, reason)
        if self._mcp is not None:
            self._mcp.close(reason, ts)

    # -- requests --------------------------------------------------------------
    def _req_head(self, head) -> None:
        self.discard_ingress = False
        req = Request(head.method, head.target, head.headers)
        kind, mod = classify_head(req)
        if kind == IGNORED and _asks_h2c(req):
            # Its answer may be 101 to HTTP/2 (h2c), which the connection's next calls use: keep reading.
            self.req.abandon()
            self.queue.append(Exchange(self, head, req, IGNORED, None, self.origin))
            self.stats.ignored_exchanges += 1
            return
        if kind == IGNORED:
            self.req.abandon()   # skip its body, if any: the kernel stops copying it
            if self.queue:       # pipelined behind others: hold its place so pairing stays right
                self.queue.append(Exchange(self, head, req, IGNORED, None, self.origin))
                self._ignore(None, tell_only=True)
            else:
                self._ignore(None)
            return
        if len(self.queue) >= MAX_PENDING:
            # A peer that never answers must not grow state without bound.
            old = self.queue.popleft()
            if old.kind != IGNORED:
                old.start()
                old.response_end(head.start_ns, "unanswered")
        ex = Exchange(self, head, req, kind, mod, self.origin)
        self.cur_req = ex
        self.queue.append(ex)

    def _req_body(self, head, data: bytes, ts: int) -> None:
        ex = self.cur_req
        if ex is None:
            return
        ex.request_body(data)
        if ex.kind == PENDING and ex.req_kept.size == len(data) and not ex.req.header("content-encoding"):
            first = ex.first_body_bytes()
            if first and first not in (b"{", b"["):
                self.req.abandon()
                self._drop(ex)

    def _req_end(self, head, ts: int) -> None:
        ex = self.cur_req
        self.cur_req = None
        if ex is None:
            return
        ex.req_done = True
        ex.start()
        if ex.kind == IGNORED:
            self._drop(ex)

    def _req_error(self, reason: str, ts: int) -> None:
        self.stats.parse_errors += 1
        ex = self.cur_req
        self.cur_req = None
        if ex is not None:
            ex.mark("parse_error: " + reason)
            ex.start()
            if ex.kind == IGNORED:
                self._drop(ex)

    def _cut_request(self, ts: int) -> None:
        # Bytes after the copied part are lost: the request ends here, the stream resyncs.
        ex = self.cur_req
        self.cur_req = None
        self.req.abandon()
        if ex is not None:
            ex.mark("cut")
            ex.start()
            if ex.kind == IGNORED:
                self._drop(ex)

    def _drop(self, ex: Exchange) -> None:
        """No provider wants this exchange: forget it and tell the capture layer."""
        if self.cur_req is ex:
            self.cur_req = None
        if self.queue and self.queue[0] is ex and ex.resp_head is None:
            self.queue.popleft()
            self._ignore(ex)
        else:
            ex.kind = IGNORED   # behind another exchange (pipelined): skipped when its turn comes
            self._ignore(None, tell_only=True)

    def _ignore(self, ex, tell_only: bool = False) -> None:
        self.stats.ignored_exchanges += 1
        if not tell_only and not self.queue:
            # Whatever answers it is skipped until a response start line follows a new request.
            self.resp.abandon()
            self.discard_ingress = True
        self.ctx.ignore_conn(self.id)

    # -- responses -------------------------------------------------------------
    def _front(self) -> Exchange | None:
        while self.queue and self.queue[0].kind == IGNORED and self.queue[0].resp_head is None:
            self.queue.popleft()
            if not self.queue:
                self.resp.abandon()
                self.discard_ingress = True
                return None
        return self.queue[0] if self.queue else None

    def _resp_head(self, head) -> None:
        if 100 <= head.status < 200:
            if head.status == 101 and (head.header("upgrade") or "").strip().lower() == "h2c":
                # to HTTP/2: the kernel keeps copying (the client's preface follows and makes
                # the connection HTTP/2 there, bpf/copy.h classify_write) and so do we, as HTTP/2
                self._upgrade_h2c()
                return
            if head.status == 101:   # Switching Protocols (e.g. WebSocket): no more HTTP/1.1 here
                self.req.stop()
                self.discard_ingress = True
                self._ignore(None, tell_only=True)
            return   # interim (100 Continue): the parser skips it
        ex = self._front()
        if ex is None:
            self.stats.unmatched_responses += 1
            self.resp.abandon()
            return
        if ex.req.method == "HEAD":
            head.no_body = True
        if not ex.started:
            ex.start()   # answered before the request ended (e.g. 413): go with what we have
        ex.response_head(head)

    def _upgrade_h2c(self) -> None:
        """101 to h2c: HTTP/2 from the next byte on; the request that asked is its stream 1."""
        ex = self.queue[0] if self.queue else None
        ts, wall = self.resp.ts, self.resp.wall
        rest = self.resp.take_rest()
        self.req.stop()
        self.queue.clear()
        self.cur_req = None
        self.h2 = H2Conn.upgraded(self, ex, ts)
        if rest:
            self.h2.wire.ingress(rest, ts, wall)

    def _resp_body(self, head, data: bytes, ts: int) -> None:
        if self.queue and self.queue[0].resp_head is head:
            self.queue[0].response_body(data, ts)

    def _resp_end(self, head, ts: int) -> None:
        if self.queue and self.queue[0].resp_head is head:
            ex = self.queue.popleft()
            if self.cur_req is ex:       # response ended before the request did
                self.cur_req = None
            ex.response_end(ts)
            self._front()

    def _resp_error(self, reason: str, ts: int) -> None:
        self.stats.parse_errors += 1
        ex = self._front()
        if ex is not None:
            self.queue.popleft()
            if self.cur_req is ex:
                self.cur_req = None
            ex.start()
            ex.response_end(ts, "parse_error: " + reason)

    def _cut_response(self, ts: int) -> None:
        ex = self.queue[0] if self.queue else None
        self.resp.abandon()
        if ex is not None and ex.resp_head is not None:
            self.queue.popleft()
            ex.response_end(ts, "cut")
