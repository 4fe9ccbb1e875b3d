"""MCP over stdio (or any byte stream carrying newline-delimited JSON-RPC).

The capture layer maps both processes' writes onto one ipc ConnId (the
client:server pair, agtap.capture.connid): egress = what the client wrote (to
the server's stdin), ingress = what the server wrote (its stdout). Each line
is one JSON-RPC message or batch.
"""

from __future__ import annotations

import re

from agtap.capture.connid import ConnId
from agtap.drivers.context import DriverContext
from agtap.providers.base import Origin
from agtap.providers.mcp import McpContext, McpSession
from agtap.wire.ndjson import LineDecoder
from agtap.wire.jsontext import loads

# For a line the capture cut short: enough to pair it or name it, from its first bytes.
_ID_RE = re.compile(rb'"id"\s*:\s*("(?:[^"\\]|\\.)*"|-?\d+)')
_METHOD_RE = re.compile(rb'"method"\s*:\s*"((?:[^"\\]|\\.)*)"')


class IpcConn:
    kind = "jsonrpc"

    def __init__(self, conn_id: ConnId, ctx: DriverContext):
        self.id = conn_id
        self.stats = ctx.stats
        self.lines = {True: LineDecoder(ctx.limits.max_body), False: LineDecoder(ctx.limits.max_body)}
        self.session = McpSession(ctx.emit, ctx.stats)
        self.client: Origin | None = None   # the process writing requests (egress)
        self.server: Origin | None = None
        self.last_ts = 0

    @property
    def busy(self) -> bool:
        return bool(self.session.pending)

    def _ctx(self) -> McpContext:
        # Calls are attributed to the client process when known (it is the one making them).
        return McpContext(self.client or self.server or Origin())

    def egress(self, chunk, data: bytes | None = None) -> None:
        self.client = Origin.of(chunk)
        self._feed(True, chunk, chunk.data if data is None else data)

    def ingress(self, chunk) -> None:
        if self.server is None:
            self.server = Origin.of(chunk)
        self._feed(False, chunk, chunk.data)

    def _feed(self, from_client: bool, chunk, data: bytes) -> None:
        dec = self.lines[from_client]
        before = dec.overflows
        ctx = self._ctx()
        for line, first_ts, ts in dec.feed(data, chunk.ts_ns):
            try:
                obj = loads(line)
            except (ValueError, UnicodeDecodeError):
                self.stats.parse_errors += 1
                continue
            wall = chunk.wall_ns - (ts - first_ts) if chunk.wall_ns else 0
            self.session.message(obj, from_client, ts, wall, ctx, raw=line, wire_bytes=len(line) + 1,
                                 first_ts=first_ts)
        if dec.overflows != before:
            self.stats.parse_errors += dec.overflows - before
        if chunk.cut:
            self._cut(from_client, dec.take_partial(), chunk, ctx)

    def _cut(self, from_client: bool, partial: bytes, chunk, ctx) -> None:
        """The write was longer than what was copied: name the message from its first bytes if we can."""
        # The rest of this line never arrives; the next write starts a new line.
        head = partial[:4096]
        mid = _ID_RE.search(head)
        method = _METHOD_RE.search(head)
        if mid is None and method is None:
            if partial.strip():
                self.stats.parse_errors += 1
            return
        obj: dict = {"jsonrpc": "2.0"}
        if mid is not None:
            try:
                obj["id"] = loads(mid.group(1))
            except ValueError:
                pass
        if method is not None:
            obj["method"] = method.group(1).decode("utf-8", "replace")
        else:
            obj["result"] = None
        self.session.message(obj, from_client, chunk.ts_ns, chunk.wall_ns, ctx, raw=partial,
                             wire_bytes=len(partial), incomplete="cut")

    def close(self, reason: str, ts: int) -> None:
        self.session.close(reason, ts)
