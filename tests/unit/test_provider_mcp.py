"""MCP over stdio and Streamable HTTP.

Message shapes from https://modelcontextprotocol.io/specification/2025-06-18/basic
(JSON-RPC request/response/notification), /server/tools (tools/list, tools/call
with result.isError), /client/sampling (sampling/createMessage, server->client)
and /basic/transports (stdio newline-delimited; Streamable HTTP with
application/json or text/event-stream answers, Mcp-Session-Id, 202 for notifications).
"""

from __future__ import annotations

import json

from agtap.capture.chunk import Transport
from tests.support.harness import Run, chunk_frame, request, response, response_head


def line(obj) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def rpc(id_, method, params=None):
    m = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        m["params"] = params
    return m


def ok(id_, result):
    return {"jsonrpc": "2.0", "id": id_, "result": result}


def stdio_run() -> Run:
    return Run(conn="ipc:81234", transport=Transport.PIPE)


def client(r: Run, data: bytes, t: float, **kw):
    r.out(data, t, pid=100, proc="claude", **kw)


def server(r: Run, data: bytes, t: float, **kw):
    r.inn(data, t, pid=200, proc="weather-mcp", **kw)


def test_stdio_session():
    r = stdio_run()
    client(r, line(rpc(0, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                         "clientInfo": {"name": "c", "version": "1"}})), 0)
    server(r, line(ok(0, {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                          "serverInfo": {"name": "weather", "version": "1.0"}})), 5)
    client(r, line({"jsonrpc": "2.0", "method": "notifications/initialized"}), 6)
    tl = line(rpc(1, "tools/list"))
    client(r, tl[:10], 7)                      # a partial line ...
    client(r, tl[10:], 8)                      # ... completed by the next write
    server(r, line(ok(1, {"tools": [{"name": "get_forecast", "inputSchema": {"type": "object"}}]})), 9)
    # two requests in one write; a string id and an int id
    client(r, line(rpc("call-2", "tools/call", {"name": "get_forecast", "arguments": {"city": "Oslo"}}))
           + line(rpc(3, "resources/read", {"uri": "file:///x"})), 10)
    server(r, line(ok("call-2", {"content": [{"type": "text", "text": "Sunny"}], "isError": False}))
           + line({"jsonrpc": "2.0", "id": 3, "error": {"code": -32601, "message": "Method not found"}}), 30)
    server(r, line({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "x"}}), 31)
    client(r, line(rpc(4, "tools/call", {"name": "get_alerts", "arguments": {}})), 40)
    server(r, line(ok(4, {"content": [{"type": "text", "text": "API down"}], "isError": True})), 45)
    # server -> client request (sampling): paired the other way round
    server(r, line(rpc("s1", "sampling/createMessage", {"messages": [], "maxTokens": 10})), 50)
    client(r, line(ok("s1", {"role": "assistant", "content": {"type": "text", "text": "hi"}, "model": "m"})), 70)
    client(r, line(rpc(5, "tools/call", {"name": "slow_tool"})), 80)
    r.close(100, "process_exit")

    assert all(c.http_version is None for c in r.calls)   # stdio: no HTTP
    got = [(c.model, c.jsonrpc_id, c.stop_reason, c.latency_ms, c.tools, c.incomplete_reason) for c in r.calls]
    assert got == [
        ("initialize", "0", None, 5.0, [], None),
        ("notifications/initialized", None, None, None, [], None),
        ("tools/list", "1", None, 2.0, [], None),                 # first byte at 7, answer at 9
        ("tools/call", "call-2", None, 20.0, ["get_forecast"], None),
        ("resources/read", "3", "error:-32601", 20.0, [], None),
        ("notifications/message", None, None, None, [], None),
        ("tools/call", "4", "error:tool_error", 5.0, ["get_alerts"], None),
        ("sampling/createMessage", "s1", None, 20.0, [], None),
        ("tools/call", "5", None, None, ["slow_tool"], "process_exit"),
    ]
    for c in r.calls:
        assert (c.provider, c.kind, c.transport, c.server_address) == ("mcp", "mcp_call", "pipe", "")
        assert c.operation == c.model and c.input_tokens is None
        assert c.pid == 100 and c.proc == "claude"   # the client makes the calls
    init = r.calls[0]
    assert init.bodies.response_events[0]["method"] == "initialize"
    assert init.bodies.response_events[1]["result"]["serverInfo"]["name"] == "weather"
    assert init.request_bytes == len(line(rpc(0, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                                                "clientInfo": {"name": "c", "version": "1"}})))
    assert r.calls[-1].incomplete and sum(c.incomplete for c in r.calls) == 1


def test_stdio_batch_and_garbage_line():
    r = stdio_run()
    client(r, line([rpc(7, "ping"), {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {}}]), 0)
    client(r, b"this is not json\n", 1)
    server(r, line([ok(7, {})]), 2)
    assert [(c.model, c.latency_ms) for c in r.calls] == [("notifications/cancelled", None), ("ping", 2.0)]
    assert r.p.stats.parse_errors == 1


def test_stdio_cut_response_still_finishes_the_call():
    r = stdio_run()
    client(r, line(rpc(9, "tools/call", {"name": "dump"})), 0)
    big = line(ok(9, {"content": [{"type": "text", "text": "x" * 10000}]}))
    server(r, big[:4096], 12, cut=True)   # the capture copied only the first 4 KiB of this write
    client(r, line(rpc(10, "ping")), 20)  # the stream carries on at the next write
    server(r, line(ok(10, {})), 21)
    a, b = r.calls
    assert (a.jsonrpc_id, a.incomplete, a.incomplete_reason, a.latency_ms) == ("9", True, "cut", 12.0)
    assert (b.model, b.incomplete) == ("ping", False)


HOST = "localhost:3000"


def test_streamable_http_json_and_sse():
    r = Run(conn="sock:55:7", transport=Transport.SOCKET)
    init = rpc(1, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "x"}})
    r.out(request("/mcp", init, host=HOST, headers={"Accept": "application/json, text/event-stream"}), 0)
    r.inn(response(ok(1, {"protocolVersion": "2025-06-18", "serverInfo": {"name": "s"}}),
                   headers={"Mcp-Session-Id": "1868a90c-abc"}), 4)
    r.out(request("/mcp", {"jsonrpc": "2.0", "method": "notifications/initialized"}, host=HOST,
                  headers={"Mcp-Session-Id": "1868a90c-abc"}), 5)
    r.inn(response_head(202, {"Content-Length": "0"}), 6)
    call = rpc(2, "tools/call", {"name": "echo", "arguments": {"s": "hi"}})
    r.out(request("/mcp", call, host=HOST, headers={"Mcp-Session-Id": "1868a90c-abc"}), 10)
    r.inn(response_head(200, {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"}), 11)
    r.inn(chunk_frame(b'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/progress",'
                      b'"params":{"progress":1}}\n\n'), 12)
    r.inn(chunk_frame(b"event: message\ndata: " + json.dumps(ok(2, {"content": [{"type": "text", "text": "hi"}]})).encode()
                      + b"\n\n"), 25)
    r.inn(b"0\r\n\r\n", 26)
    got = [(c.model, c.jsonrpc_id, c.latency_ms, c.mcp_session_id, c.http_status) for c in r.calls]
    assert got == [
        ("initialize", "1", 4.0, "1868a90c-abc", 200),       # the session id arrives with the answer
        ("notifications/initialized", None, None, "1868a90c-abc", None),
        ("notifications/progress", None, None, "1868a90c-abc", 200),
        ("tools/call", "2", 15.0, "1868a90c-abc", 200),
    ]
    tc = r.calls[-1]
    assert tc.tools == ["echo"] and tc.server_address == "localhost" and tc.server_port == 3000
    assert tc.transport == "socket" and r.ignored == []
    assert {c.http_version for c in r.calls} == {"1.1"}


def test_streamable_http_error_status_without_jsonrpc_answer():
    r = Run(conn="sock:55:8", transport=Transport.SOCKET)
    r.out(request("/mcp", rpc(3, "tools/list"), host=HOST, headers={"Mcp-Session-Id": "gone"}), 0)
    r.inn(response(b"session not found", status=404, content_type="text/plain"), 2)
    c = r.one()
    assert c.stop_reason == "error:http_404" and c.http_status == 404


def test_post_json_that_is_not_jsonrpc_is_ignored():
    r = Run(conn="sock:55:9", transport=Transport.SOCKET)
    r.out(request("/api/things", {"a": 1}, host=HOST), 0)
    r.inn(response({"ok": True}), 2)
    assert r.calls == [] and r.ignored == ["sock:55:9"]


def test_json_lines_that_are_not_jsonrpc_make_no_calls():
    r = stdio_run()
    client(r, line({"method": "tools/call", "id": 1}), 0)      # no "jsonrpc": "2.0"
    server(r, line({"id": 1, "result": {}}), 1)
    assert r.calls == [] and r.p.stats.parse_errors == 2


def test_streamable_http_server_request_answered_on_another_connection():
    # The server sends sampling/createMessage on the client's GET stream (conn A); the client
    # answers with a POST on another pooled connection (conn B). Same Mcp-Session-Id: one call.
    r = Run(conn="sock:55:20", transport=Transport.SOCKET)
    sid = {"Mcp-Session-Id": "s-42"}
    r.out(b"GET /mcp HTTP/1.1\r\nHost: localhost:3000\r\nAccept: text/event-stream\r\nMcp-Session-Id: s-42\r\n\r\n", 0)
    r.inn(response_head(200, {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"}), 1)
    r.inn(chunk_frame(b"data: " + json.dumps(rpc(0, "sampling/createMessage", {"maxTokens": 5})).encode()
                      + b"\n\n"), 10)
    r.out(request("/mcp", ok(0, {"role": "assistant", "model": "m", "content": {"type": "text", "text": "x"}}),
                  host=HOST, headers=sid), 30, conn="sock:55:21")
    r.inn(response_head(202, {"Content-Length": "0"}), 31, conn="sock:55:21")
    c = r.one()
    assert (c.model, c.jsonrpc_id, c.latency_ms, c.mcp_session_id) == ("sampling/createMessage", "0", 20.0, "s-42")
    # a request whose connection dies unanswered is reported, once
    r.out(request("/mcp", rpc(5, "tools/call", {"name": "slow"}), host=HOST, headers=sid), 40, conn="sock:55:21")
    r.close(50, conn="sock:55:21")
    assert [(x.jsonrpc_id, x.incomplete_reason) for x in r.calls[1:]] == [("5", "connection_closed")]
    r.p.flush()
    assert len(r.calls) == 2


def test_an_answer_whose_request_was_not_seen_is_counted_and_said(caplog):
    # issue 19: a first message the capture missed shows up as its answer with nothing to pair
    r = stdio_run()
    with caplog.at_level("DEBUG", logger="agtap.mcp"):
        server(r, line(ok(0, {"protocolVersion": "2025-06-18", "serverInfo": {"name": "w", "version": "1"}})), 5)
    client(r, line({"jsonrpc": "2.0", "method": "notifications/initialized"}), 6)
    assert [c.model for c in r.calls] == ["notifications/initialized"]
    assert r.p.stats.unmatched_responses == 1 and r.p.stats.parse_errors == 0
    assert "an answer (id 0, pid 200) to a request that was not seen" in caplog.text   # the only pid known yet
