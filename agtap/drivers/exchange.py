"""One HTTP request/response exchange on its way to a Call.

The connection driver (httpconn) frames messages and pairs them; an Exchange
turns one pair into provider calls: it keeps the (bounded) bodies, undoes
Content-Encoding as bytes arrive, splits the response into messages (SSE
events, JSON-array elements, or one JSON body) and hands each to its provider
with the time of the chunk that completed it.
"""

from __future__ import annotations


from agtap.call import KIND_LLM
from agtap.providers import (anthropic, bedrock_converse, bedrock_invoke, gemini, gemini_embeddings, ollama,
                             openai_chat, openai_embeddings, openai_responses)
from agtap.providers.base import LlmProvider, Request, new_call, served_by, set_error, split_host
from agtap.providers.mcp import McpContext, McpSession, is_jsonrpc
from agtap.wire.encoding import BodyDecoder, decode_all
from agtap.wire.eventstream import EventStreamDecoder
from agtap.wire.jsonarray import JsonArrayStream
from agtap.wire.ndjson import LineDecoder
from agtap.wire.sse import SseDecoder
from agtap.wire.jsontext import loads

LLM_PROVIDERS: tuple[LlmProvider, ...] = (anthropic, openai_chat, openai_responses, gemini, ollama,
                                          openai_embeddings, gemini_embeddings, bedrock_converse, bedrock_invoke)

# Exchange kinds
LLM, MCP, PENDING, IGNORED = "llm", "mcp", "pending", "ignored"


def classify_head(req: Request) -> tuple[str, object]:
    """From the request head alone: (kind, provider module or None)."""
    if req.method == "POST":
        for mod in LLM_PROVIDERS:
            if mod.match(req):
                return LLM, mod
    if req.header("mcp-method") or (req.header("mcp-session-id") and req.method in ("POST", "GET")):
        return MCP, None
    if req.method != "POST":
        return IGNORED, None
    ct = (req.header("content-type") or "").lower()
    if ct and "json" not in ct:
        return IGNORED, None
    return PENDING, None  # maybe MCP: the body will tell


class McpSessions:
    """For a connection driver (HTTP/1.1, HTTP/2): the MCP session its exchanges' messages go to.
    Needs `ctx`, `emit`, `stats` and `_mcp` (None until the first MCP exchange without a session id)."""

    def mcp_session(self, session_id: str | None = None) -> McpSession:
        if session_id:   # messages pair across connections by Mcp-Session-Id
            return self.ctx.shared_session(session_id)
        if self._mcp is None:
            self._mcp = McpSession(self.emit, self.stats)
        return self._mcp


class KeptBody:
    """A body's bytes as kept for the bodies sink: up to max_body; a cut is counted once."""

    __slots__ = ("parts", "size", "truncated")

    def __init__(self):
        self.parts: list[bytes] = []
        self.size = 0
        self.truncated = False

    def add(self, data: bytes, max_body: int, stats) -> None:
        room = max_body - self.size
        if len(data) > room:
            data = data[:max(room, 0)]
            if not self.truncated:
                self.truncated = True
                stats.bodies_truncated += 1
        if data:
            self.parts.append(data)
            self.size += len(data)

    def joined(self) -> bytes:
        return b"".join(self.parts)


class Exchange:
    __slots__ = ("conn", "head", "req", "kind", "mod", "state", "call", "origin", "req_kept", "req_done", "started",
                 "resp_head", "decoder", "mode", "sse", "jarr", "lines", "evs", "resp_kept", "incomplete", "last_ts", "ctx",
                 "mcp_keys", "session", "stream_done")

    def __init__(self, conn, head, req: Request, kind: str, mod, origin):
        self.conn = conn              # the HttpConn: limits, stats, emit, mcp session
        self.head = head
        self.req = req
        self.kind = kind
        self.mod = mod
        self.origin = origin
        self.state = None
        self.call = None
        self.req_kept = KeptBody()
        self.req_done = False
        self.started = False
        self.resp_head = None
        self.decoder: BodyDecoder | None = None
        self.mode = "json"
        self.sse: SseDecoder | None = None
        self.jarr: JsonArrayStream | None = None
        self.lines: LineDecoder | None = None          # mode "ndjson" (Ollama)
        self.evs: EventStreamDecoder | None = None     # mode "eventstream" (AWS Bedrock)
        self.resp_kept = KeptBody()
        self.incomplete: str | None = None
        self.stream_done = False      # the provider's end-of-stream event was seen
        self.last_ts = 0
        self.ctx: McpContext | None = None
        self.mcp_keys: list = []
        self.session = None           # McpSession the messages of this exchange go to

    def mark(self, reason: str) -> None:
        if self.incomplete is None:
            self.incomplete = reason

    # -- request -------------------------------------------------------------
    def request_body(self, data: bytes) -> None:
        self.req_kept.add(data, self.conn.limits.max_body, self.conn.stats)

    def first_body_bytes(self) -> bytes:
        parts = self.req_kept.parts
        return parts[0].lstrip()[:1] if parts else b""

    def start(self) -> None:
        """The request is complete (or a response began early): decide and begin the call."""
        if self.started:
            return
        self.started = True
        body = self.req_kept.joined()
        self.req_kept.parts = []
        ce = self.req.header("content-encoding")
        if ce:
            body, problem = decode_all(ce, body, self.conn.limits.decompress_cap)
            if problem:
                self.mark(problem if problem == "decompression_cap" else "parse_error: " + problem)
        self.req.body = body
        self.req.body_complete = self.req_done and not self.req_kept.truncated
        host = self.req.header("host") or self.req.header(":authority")   # HTTP/1.1 or HTTP/2
        addr, port = split_host(host, self.origin.transport)
        if self.kind == PENDING:
            self.kind = MCP if is_jsonrpc(self.req.json()) else IGNORED
        if self.kind == LLM:
            call = new_call(self.origin, self.mod.NAME, KIND_LLM, self.head.start_ns, self.head.start_wall)
            served_by(call, addr, port, self.req.path)
            call.http_version = self.conn.http_version
            b = call.bodies
            b.request_headers = self.req.headers
            b.request_target = f"{self.req.method} {self.req.target}"
            b.request_body = body
            self.call = call
            if body and self.req.body_complete and self.req.json() is None:
                # every provider API takes a JSON body: this one is cut, garbled or hostile
                self.conn.stats.parse_errors += 1
                self.mark("parse_error: request body is not JSON")
            self.state = self.mod.begin(self.req, call)
        elif self.kind == MCP:
            sid = self.req.header("mcp-session-id")
            self.ctx = McpContext(self.origin, addr, port, sid, path=self.req.path,
                                  http_version=self.conn.http_version)
            # With a session id, messages pair across connections (a server request on the
            # GET stream is answered by a POST on another connection of the pool).
            self.session = self.conn.mcp_session(sid)
            obj = self.req.json()
            if obj is None and self.req.method == "POST":
                self.mark("parse_error: bad json-rpc body")
                self.conn.stats.parse_errors += 1
            elif obj is not None:
                self.mcp_keys = self.session.message(
                    obj, True, self.head.start_ns, self.head.start_wall, self.ctx, raw=body,
                    wire_bytes=self.head.wire_bytes, first_ts=self.head.start_ns, incomplete=self.incomplete)

    # -- response ------------------------------------------------------------
    def response_head(self, head) -> None:
        self.resp_head = head
        self.last_ts = head.start_ns
        self.decoder = BodyDecoder(head.header("content-encoding"), self.conn.limits.decompress_cap)
        ct = (head.header("content-type") or "").lower()
        if "text/event-stream" in ct:
            self.mode = "sse"
            self.sse = SseDecoder()
            if self.call is not None:
                self.call.streaming = True   # what was sent, even if the request body was cut or capped
        elif self.kind == LLM and "application/vnd.amazon.eventstream" in ct:
            self.mode = "eventstream"
            self.evs = EventStreamDecoder()
            self.call.streaming = True
        elif self.kind == LLM and "application/x-ndjson" in ct:
            self.mode = "ndjson"
            self.lines = LineDecoder()
            self.call.streaming = True
        elif self.kind == LLM and self.call.streaming and self.mod.STREAM_JSON_ARRAY:
            self.mode = "array"
            self.jarr = JsonArrayStream()
        if self.call is not None:
            self.call.http_status = head.status
            b = self.call.bodies
            b.response_status = head.status
            b.response_headers = head.headers
        if self.ctx is not None:
            self.ctx.http_status = head.status
            sid = head.header("mcp-session-id")
            if sid:
                self.ctx.session_id = sid

    def response_body(self, data: bytes, ts: int) -> None:
        self.last_ts = ts
        dec = self.decoder
        if not dec.identity:
            data = dec.feed(data)
            if dec.capped:
                self.mark("decompression_cap")
            elif dec.error:
                self.mark("parse_error: " + dec.error)
        if not data:
            return
        kept = self.resp_kept
        if kept.size + len(data) <= self.conn.limits.max_body:
            kept.parts.append(data)     # KeptBody.add when all of it fits (once per SSE event: inlined)
            kept.size += len(data)
        else:
            kept.add(data, self.conn.limits.max_body, self.conn.stats)
        if self.mode == "sse":
            before = self.sse.overflows
            events = self.sse.feed(data, ts)
            if self.sse.overflows != before:
                # an event longer than the decoder keeps (no blank line for MBs): dropped, so say so
                self.conn.stats.parse_errors += self.sse.overflows - before
                self.mark("parse_error: sse event too large")
            for ev in events:
                self._sse_event(ev)
        elif self.mode == "array":
            for obj in self.jarr.feed(data):
                self._deliver(None, obj, ts, b"")
        elif self.mode == "ndjson":
            self._ndjson(self.lines.feed(data, ts))
        elif self.mode == "eventstream":
            for msg in self.evs.feed(data, ts):
                self._message(msg.event_name, msg.payload, msg.ts_ns)
            if self.evs.error:
                self._stream_error(self.evs.error)

    def _ndjson(self, lines) -> None:
        before = self.lines.overflows
        for line, _first_ts, ts in lines:
            self._message(None, line, ts)
        if self.lines.overflows != before:
            self._stream_error("ndjson line too large")

    def _stream_error(self, why: str) -> None:
        """A framing error in a streamed body: counted once, the call marked (what came before is kept)."""
        if self.incomplete is None or not self.incomplete.startswith("parse_error"):
            self.conn.stats.parse_errors += 1
        self.mark("parse_error: " + why)

    def _message(self, event, data: bytes, ts: int) -> None:
        """One framed message of an NDJSON or event-stream body (JSON payload) to the provider."""
        if self.mod.stream_end(event, data):
            self.stream_done = True
        if self.mod.fast(self.state, self.call, event, data, ts):
            return
        obj = None
        if data.lstrip()[:1] in (b"{", b"["):
            try:
                obj = loads(data)
            except ValueError:
                self._stream_error("bad json in stream message")
                return
        self._deliver(event, obj, ts, data)

    def _sse_event(self, ev) -> None:
        d = ev.data
        if self.kind == LLM:
            if self.mod.stream_end(ev.event, d):
                self.stream_done = True
            if self.mod.fast(self.state, self.call, ev.event, d, ev.ts_ns):
                return   # the provider needed nothing from this event's JSON
        obj = None
        if d == b"[DONE]":   # OpenAI's end-of-stream sentinel, not JSON
            pass
        elif d[:1] in (b"{", b"[") or d.lstrip()[:1] in (b"{", b"["):
            try:
                obj = loads(d)
            except ValueError:
                self.conn.stats.parse_errors += 1
                self.mark("parse_error: bad json in sse event")
                return
        self._deliver(ev.event, obj, ev.ts_ns, d)

    def _deliver(self, event, obj, ts: int, raw: bytes) -> None:
        if self.kind == LLM:
            self.mod.feed(self.state, self.call, event, obj, ts)
        elif self.kind == MCP and obj is not None:
            self.session.message(obj, False, ts, 0, self.ctx, raw=raw,
                                            wire_bytes=len(raw), incomplete=self.incomplete)

    def response_end(self, ts: int, reason: str | None = None) -> None:
        """The response is over: `reason` None for a clean end, else why it stopped."""
        if reason:
            self.mark(reason)
        if self.resp_head is None:
            self.last_ts = ts   # no answer: the call ends when we learnt it never would
        else:
            self.last_ts = max(self.last_ts, ts) if reason is None else self.last_ts
            if self.decoder is not None and not self.decoder.identity:
                rest = self.decoder.flush()
                if rest:
                    self.response_body(rest, self.last_ts)
            if self.mode == "sse":
                for ev in self.sse.finish(self.last_ts):
                    self._sse_event(ev)
            elif self.mode == "array":
                for obj in self.jarr.finish():
                    self._deliver(None, obj, self.last_ts, b"")
                if self.jarr.error and reason is None:
                    self.conn.stats.parse_errors += 1
                    self.mark("parse_error: " + self.jarr.error)
            elif self.mode == "ndjson":
                rest = self.lines.take_partial()
                if rest.strip():   # a last line without its newline
                    self._ndjson([(rest, self.last_ts, self.last_ts)])
            elif self.mode == "eventstream":
                if self.evs.finish() and reason is None:
                    self._stream_error(self.evs.error)
            else:
                self._json_body(reason)
        self._finish()

    def _json_body(self, reason) -> None:
        body = self.resp_kept.joined()
        if not body.strip():
            return
        try:
            obj = loads(body)
        except (ValueError, UnicodeDecodeError):
            if reason is None and self.resp_head.status < 400 and not self.resp_kept.truncated:
                self.conn.stats.parse_errors += 1
                self.mark("parse_error: bad json body")
            elif self.resp_kept.truncated:
                self.mark("body_truncated")
            return
        self._deliver(None, obj, self.last_ts, body if len(body) < 1 << 20 else b"")

    def _finish(self) -> None:
        head, resp = self.head, self.resp_head
        if self.decoder is not None and self.decoder.capped:
            self.conn.stats.decompression_capped += 1
        if self.kind == MCP:
            status = resp.status if resp is not None else 0
            if self.session is not None and self.mcp_keys:
                if status >= 400:
                    self.session.answer_failed(self.mcp_keys, self.last_ts, status)
                elif self.incomplete and self.incomplete not in ("cut", "decompression_cap"):
                    self.session.close_keys(self.mcp_keys, self.incomplete, self.last_ts or self.head.start_ns)
            return
        call = self.call
        if self.kind != LLM or call is None:
            return
        self.mod.finish(self.state, call)
        call.request_bytes = head.wire_bytes
        call.end_ns = max(self.last_ts, call.start_ns)
        if resp is not None:
            call.response_bytes = resp.wire_bytes
            call.latency_ms = round(max(0, self.last_ts - call.start_ns) / 1e6, 3)
            call.bodies.response_body = self.resp_kept.joined()
            if resp.status >= 400 and call.stop_reason is None:
                set_error(call, f"http_{resp.status}")
        if self.incomplete in ("connection_closed", "process_exit") and self.stream_done:
            # the provider's end-of-stream event arrived: the client had the whole answer
            # and let the connection go before the chunked terminator (SDKs stop at [DONE])
            self.incomplete = None
        if self.incomplete:
            call.incomplete, call.incomplete_reason = True, self.incomplete
        self.resp_kept.parts = []
        self.conn.emit(call)
