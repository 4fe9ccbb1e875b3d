"""Synthetic recordings in the `agtap record` format (agtap/capture/recording.py).

Realistic bytes: requests as an SDK sends them, responses as bench.server sends them
(tests.support's provider shapes), delivered as SSL_read would deliver them: the head in
one chunk, then one chunk per SSE event (one TLS record per server write, chunked
framing included). Non-streaming responses arrive in one chunk. MCP stdio sessions:
newline-delimited JSON-RPC on an ipc conn, one message per chunk.
"""

from __future__ import annotations

import json
from pathlib import Path

from agtap.capture.chunk import Chunk, ConnClosed, Direction, Transport
from agtap.capture.connid import ConnId
from agtap.capture.recording import encode, header
from bench.server import answers

E, I = Direction.EGRESS, Direction.INGRESS
WALL0 = 1_790_000_000_000_000_000


def _req(path: str, body: dict) -> bytes:
    b = json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: api.anthropic.com\r\nAccept: application/json\r\n"
            f"Accept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\nUser-Agent: Anthropic/Python 0.75.0\r\n"
            f"X-Api-Key: sk-ant-bench\r\nAnthropic-Version: 2023-06-01\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(b)}\r\n\r\n").encode() + b


def _request(stream: bool) -> bytes:
    return _req("/v1/messages", {"model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": stream,
                                 "messages": [{"role": "user", "content": "Summarize the log below. " * 20}]})


def _unchunk(write: bytes) -> bytes:
    """The payload of a write that holds HTTP/1.1 chunks (the terminator gives b"")."""
    out, pos = b"", 0
    while pos < len(write):
        nl = write.index(b"\r\n", pos)
        size = int(write[pos:nl], 16)
        out += write[nl + 2:nl + 2 + size]
        pos = nl + 2 + size + 2
        if size == 0:
            break
    return out


class Gen:
    def __init__(self):
        self.ts = 1_000_000_000
        self.table = answers()

    def chunk(self, conn, d, data, pid=4242, transport=Transport.TLS) -> Chunk:
        self.ts += 20_000
        return Chunk(conn=conn, direction=d, ts_ns=self.ts, wall_ns=WALL0 + self.ts, pid=pid, tid=pid,
                     comm="python3", proc="python3", data=data, transport=transport, exe="/usr/bin/python3.11")

    def http_calls(self, n: int, stream: bool, per_conn: int = 50) -> list:
        out = []
        first, writes = self.table[("anthropic", stream)]
        req = _request(stream)
        for i in range(n):
            conn = ConnId.tls(4242, 0x5500000 + i // per_conn)
            out.append(self.chunk(conn, E, req))
            out.append(self.chunk(conn, I, first))
            for w in writes:
                out.append(self.chunk(conn, I, w))
            if i % per_conn == per_conn - 1:
                out.append(ConnClosed(conn, self.ts))
        return out

    def h2_calls(self, n: int, per_conn: int = 50) -> list:
        """The streamed workload over HTTP/2: the same request and SSE events as http_calls(n, True),
        in frames as an HTTP/2 client and server write them (hyperframe; hpack, one encoder per
        connection and direction): the preface and SETTINGS, then per call the request's HEADERS +
        DATA in one write, the answer's HEADERS, one DATA frame per event (END_STREAM on the last)."""
        from hpack import Encoder
        from hyperframe.frame import DataFrame, HeadersFrame, SettingsFrame
        from agtap.wire.http2 import PREFACE
        _first, writes = self.table[("anthropic", True)]
        events = [e for e in map(_unchunk, writes) if e]
        head, _, body = _request(True).partition(b"\r\n\r\n")
        fields = [tuple(line.split(": ", 1)) for line in head.decode().split("\r\n")[1:]]
        req_headers = [(":method", "POST"), (":scheme", "https"), (":authority", "api.anthropic.com"),
                       (":path", "/v1/messages")] + [(k.lower(), v) for k, v in fields
                                                     if k.lower() not in ("host", "connection")]
        out: list = []
        for i in range(n):
            k = i % per_conn
            conn = ConnId.tls(4242, 0x6600000 + i // per_conn)
            if k == 0:
                client, server = Encoder(), Encoder()
                out.append(self.chunk(conn, E, PREFACE + SettingsFrame(0).serialize()))
                out.append(self.chunk(conn, I, SettingsFrame(0).serialize()))
            sid = 2 * k + 1
            out.append(self.chunk(conn, E, HeadersFrame(sid, client.encode(req_headers), flags=["END_HEADERS"]).serialize()
                                  + DataFrame(sid, body, flags=["END_STREAM"]).serialize()))
            out.append(self.chunk(conn, I, HeadersFrame(sid, server.encode(
                [(":status", "200"), ("content-type", "text/event-stream")]), flags=["END_HEADERS"]).serialize()))
            for j, ev in enumerate(events):
                last = j == len(events) - 1
                out.append(self.chunk(conn, I, DataFrame(sid, ev, flags=["END_STREAM"] if last else []).serialize()))
            if k == per_conn - 1:
                out.append(ConnClosed(conn, self.ts))
        return out

    def mcp_sessions(self, n: int, tool_calls: int = 5) -> list:
        out = []
        for s in range(n):
            conn = ConnId.ipc(4242, 9000 + s)
            msgs = [({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                        "protocolVersion": "2025-06-18", "capabilities": {},
                        "clientInfo": {"name": "bench", "version": "1"}}},
                     {"jsonrpc": "2.0", "id": 0, "result": {"protocolVersion": "2025-06-18", "capabilities": {
                         "tools": {"listChanged": False}}, "serverInfo": {"name": "bench-server", "version": "1"}}}),
                    ({"jsonrpc": "2.0", "method": "notifications/initialized"}, None),
                    ({"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                     {"jsonrpc": "2.0", "id": 1, "result": {"tools": [
                         {"name": "add", "description": "Add two numbers", "inputSchema": {
                             "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}}]}})]
            for k in range(tool_calls):
                msgs.append(({"jsonrpc": "2.0", "id": 2 + k, "method": "tools/call",
                              "params": {"name": "add", "arguments": {"a": k, "b": 3}}},
                             {"jsonrpc": "2.0", "id": 2 + k, "result": {
                                 "content": [{"type": "text", "text": str(k + 3)}], "isError": False}}))
            for req, resp in msgs:
                out.append(self.chunk(conn, E, json.dumps(req).encode() + b"\n", transport=Transport.PIPE))
                if resp is not None:
                    out.append(self.chunk(conn, I, json.dumps(resp).encode() + b"\n", pid=4343,
                                          transport=Transport.PIPE))
            out.append(ConnClosed(conn, self.ts))
        return out


def write(path: Path, items: list) -> int:
    with open(path, "w") as f:
        f.write(json.dumps(header()) + "\n")
        for it in items:
            f.write(encode(it) + "\n")
    return path.stat().st_size
