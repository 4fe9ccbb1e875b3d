"""MCP: JSON-RPC 2.0 calls over stdio (newline-delimited) or Streamable HTTP.

https://modelcontextprotocol.io/specification/2025-06-18/basic (messages: request
{jsonrpc, id, method, params}, response {jsonrpc, id, result|error}, notification
{jsonrpc, method, params}) and .../basic/transports (stdio: one message per line;
Streamable HTTP: POST a message, answer is application/json or text/event-stream
whose events carry messages; Mcp-Session-Id header).

One `McpSession` per connection pairs requests with responses by id, in both
directions: client->server requests (tools/call, ...) and server->client ones
(sampling/createMessage, elicitation). Every request, and every notification,
becomes one Call of kind mcp_call with model = operation = the method.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from agtap.call import KIND_MCP
from agtap.providers.base import Origin, new_call, served_by, set_error

NAME = "mcp"
log = logging.getLogger("agtap.mcp")


class McpContext:
    """Where the messages of one exchange (HTTP) or one connection (stdio) come from."""

    __slots__ = ("origin", "server_address", "server_port", "session_id", "http_status", "path", "http_version")

    def __init__(self, origin: Origin, server_address: str = "", server_port: int | None = None,
                 session_id: str | None = None, http_status: int | None = None, path: str = "",
                 http_version: str | None = None):
        self.origin = origin
        self.http_version = http_version   # "1.1" | "2" over Streamable HTTP, None over stdio
        self.path = path
        self.server_address = server_address
        self.server_port = server_port
        self.session_id = session_id
        self.http_status = http_status


def is_jsonrpc(obj: Any) -> bool:
    """A JSON-RPC 2.0 message or a non-empty batch of them."""
    if isinstance(obj, list):
        return bool(obj) and all(isinstance(o, dict) and o.get("jsonrpc") == "2.0" for o in obj)
    return isinstance(obj, dict) and obj.get("jsonrpc") == "2.0"


def _id_key(v: Any):
    return (type(v).__name__, v) if isinstance(v, (int, str)) and not isinstance(v, bool) else None


class McpSession:
    def __init__(self, emit: Callable, stats, max_pending: int = 4096):
        self.emit = emit
        self.stats = stats          # PipelineStats: parse_errors, unmatched_responses
        self.pending: dict = {}     # (from_client, id key) -> Call awaiting its response
        self.max_pending = max_pending
        self.last_ts = 0            # for shared (by session id) sessions: last use

    def message(self, obj: Any, from_client: bool, ts: int, wall: int, ctx: McpContext,
                raw: bytes = b"", wire_bytes: int = 0, first_ts: int | None = None,
                incomplete: str | None = None) -> list:
        """Handle one decoded message (or batch). Returns the pending keys of requests it opened."""
        if isinstance(obj, list):
            opened = []
            for o in obj:
                opened += self.message(o, from_client, ts, wall, ctx, b"", 0, first_ts, incomplete)
            return opened
        if not isinstance(obj, dict) or obj.get("jsonrpc") != "2.0":
            self._bad()   # JSON, but not JSON-RPC 2.0: not an MCP message
            return []
        method = obj.get("method")
        mid = obj.get("id")
        if isinstance(method, str):
            call = new_call(ctx.origin, NAME, KIND_MCP, first_ts or ts, wall)
            call.model = call.operation = method
            served_by(call, ctx.server_address, ctx.server_port, ctx.path)
            call.mcp_session_id = ctx.session_id
            call.http_version = ctx.http_version
            call.request_bytes = wire_bytes or len(raw)
            call.bodies.request_body = raw
            call.bodies.response_events.append(obj)
            params = obj.get("params")
            if method == "tools/call" and isinstance(params, dict) and isinstance(params.get("name"), str):
                call.tools.append(params["name"])
            if incomplete:
                call.incomplete, call.incomplete_reason = True, incomplete
            key = _id_key(mid)
            if key is None:  # a notification: nothing will answer it
                call.end_ns = ts
                call.http_status = ctx.http_status
                self.emit(call)
                return []
            call.jsonrpc_id = str(mid)
            pkey = (from_client, key)
            old = self.pending.pop(pkey, None)
            if old is not None:  # id reused before an answer: the old one will never get one
                self._finish_incomplete(old, "unanswered", ts)
            if len(self.pending) >= self.max_pending:
                oldest = next(iter(self.pending))
                self._finish_incomplete(self.pending.pop(oldest), "unanswered", ts)
            self.pending[pkey] = call
            return [pkey]
        if "result" in obj or "error" in obj:
            call = self.pending.pop((not from_client, _id_key(mid)), None)
            if call is None:
                # Its request was never seen: sent before the capture began, or missed (issue 19:
                # a first message the kernel did not recognise). Counted, and said at -v.
                self.stats.unmatched_responses += 1
                log.debug("mcp: an answer (id %r, pid %s) to a request that was not seen", mid, ctx.origin.pid)
                return []
            call.end_ns = ts
            call.latency_ms = round(max(0, ts - call.start_ns) / 1e6, 3)
            call.response_bytes = wire_bytes or len(raw)
            call.http_status = ctx.http_status
            if ctx.session_id and not call.mcp_session_id:
                call.mcp_session_id = ctx.session_id
            call.bodies.response_body = raw
            call.bodies.response_events.append(obj)
            err = obj.get("error")
            if err is not None:
                set_error(call, err.get("code") if isinstance(err, dict) else None)
            else:
                res = obj.get("result")
                if isinstance(res, dict) and res.get("isError") is True:
                    set_error(call, "tool_error")
            if incomplete:
                call.incomplete, call.incomplete_reason = True, incomplete
            self.emit(call)
            return []
        self._bad()
        return []

    def _bad(self) -> None:
        self.stats.parse_errors += 1

    def answer_failed(self, keys: list, ts: int, status: int) -> None:
        """An HTTP exchange carrying these requests failed with `status` and no JSON-RPC answer."""
        for k in keys:
            call = self.pending.pop(k, None)
            if call is not None:
                call.end_ns = ts
                call.latency_ms = round(max(0, ts - call.start_ns) / 1e6, 3)
                call.http_status = status
                set_error(call, f"http_{status}")
                self.emit(call)

    def _finish_incomplete(self, call, reason: str, ts: int) -> None:
        call.end_ns = ts
        call.incomplete, call.incomplete_reason = True, call.incomplete_reason or reason
        self.emit(call)

    def close_keys(self, keys: list, reason: str, ts: int) -> None:
        """These requests' exchange ended without their answer (connection gone)."""
        for k in keys:
            call = self.pending.pop(k, None)
            if call is not None:
                self._finish_incomplete(call, reason, ts)

    def close(self, reason: str, ts: int) -> None:
        """Connection gone: every unanswered request is emitted incomplete."""
        pending, self.pending = self.pending, {}
        for call in pending.values():
            self._finish_incomplete(call, reason, ts)
