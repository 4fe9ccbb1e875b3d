"""The fake API answers in shapes the official SDKs accept (no root needed).

Each official client runs in its own process against FakeApi and reports what its SDK
parsed; equal text / usage / stop reason / tool calls prove the wire shapes are right.
Clients are started in parallel (each Python SDK import costs about a second).
"""

from __future__ import annotations

import gzip
import json
import socket
import ssl
import time

import pytest

from tests.support import FakeApi, Reply, ToolCall, start_client
from tests.support.cases import LLM_CASES, MCP_CASES, OTHER_CASES, VERTEX_CASES
from tests.support.clients import KEY_HEADER, MODES, ClientRun

WEATHER = ToolCall("get_weather", {"city": "Paris"})
SCRIPTED = Reply(text="The fake model says hi.", input_tokens=31, output_tokens=9,
                 cache_read_input_tokens=4)


def run_each(api: FakeApi, cases: list[tuple[str, str, Reply]], **kwargs) -> list[ClientRun]:
    """Start all clients at once (imports overlap), then let them call one by one in order."""
    procs = []
    for kind, mode, _ in cases:
        procs.append(start_client(kind, api, mode, wait_go=True, **kwargs))
    runs = []
    # Release one at a time so the scripted queue order matches the client order.
    for proc, (_, _, reply) in zip(procs, cases):
        api.script(reply)
        runs.append(proc.go().wait().check())
    return runs


def assert_matches(run: ClientRun, reply: Reply, stream: bool) -> None:
    result = run.result
    assert "error" not in result, result
    assert result["text"] == reply.full_text()
    if stream and result.get("streamed_text") is not None:
        assert result["streamed_text"] == reply.full_text()
    assert result["input_tokens"] == reply.input_tokens
    assert result["output_tokens"] == reply.output_tokens
    if "cache_read_input_tokens" in result:
        assert result["cache_read_input_tokens"] == reply.cache_read_input_tokens
    assert [(t["name"], t["arguments"]) for t in result["tool_calls"]] == \
        [(t.name, t.arguments) for t in reply.tool_calls]


SDK_CASES = [
    ("python-anthropic", "stream", SCRIPTED),
    ("python-anthropic", "nonstream", SCRIPTED),
    ("python-anthropic", "tools-stream", Reply(tool_calls=[WEATHER])),
    ("python-openai", "chat-stream", SCRIPTED),
    ("python-openai", "chat-tools", Reply(text="", tool_calls=[WEATHER])),
    ("python-openai", "responses-stream", SCRIPTED),
    ("python-openai", "responses-tools", Reply(tool_calls=[WEATHER])),
    ("python-gemini", "stream", SCRIPTED),
    ("python-gemini", "tools", Reply(text="", tool_calls=[WEATHER])),
]


def test_python_sdks_parse_fake_answers(fake_api: FakeApi) -> None:
    runs = run_each(fake_api, SDK_CASES)
    exchanges = fake_api.wait_for(len(SDK_CASES))
    for run, (kind, mode, reply), ex in zip(runs, SDK_CASES, exchanges):
        assert_matches(run, reply, "stream" in mode)
        assert ex.header(KEY_HEADER[kind]).endswith(run.api_key)
        assert ex.header("host").startswith("127.0.0.1:")
        assert ex.raw_request.startswith(f"POST {ex.target} HTTP/1.1\r\n".encode())


def test_sdk_errors_are_provider_error_bodies(fake_api: FakeApi) -> None:
    cases = [("python-anthropic", "nonstream", Reply(status=429)),
             ("node-openai", "chat", Reply(status=429)),
             ("python-gemini", "nonstream", Reply(status=429))]
    runs = run_each(fake_api, cases)
    errors = [r.result["error"] for r in runs]
    assert [e["status"] for e in errors] == [429, 429, 429]
    assert [e["type"] for e in errors] == ["rate_limit_error", "requests", "RESOURCE_EXHAUSTED"]
    assert len(fake_api.wait_for(3)) == 3  # max_retries=0: one request each


def test_gzip_and_raw_bytes_recorded(fake_api: FakeApi) -> None:
    run = start_client("curl", fake_api, "anthropic", compressed=True).wait().check()
    ex = fake_api.wait_for(1)[0]
    assert ex.gzipped and ex.response_header("content-encoding") == "gzip"
    assert json.loads(run.result["body"]) == ex.response_json()
    head, _, wire_body = ex.raw_response.partition(b"\r\n\r\n")
    assert gzip.decompress(wire_body) == ex.response_body
    assert ex.raw_request.endswith(ex.body)


def test_keep_alive_and_echo_byte_exact(fake_api: FakeApi) -> None:
    run = start_client("python-requests", fake_api, "echo", repeat=3).wait().check()
    exchanges = fake_api.wait_for(3)
    assert len({ex.conn for ex in exchanges}) == 1  # one connection, three requests
    for result, ex in zip(run.results, exchanges):
        assert result["body"].encode() == ex.body == ex.response_body
        assert ex.raw_response.endswith(ex.body)


def test_gemini_json_array_stream_and_bulk(fake_api: FakeApi) -> None:
    fake_api.script(Reply(events=3))
    array = start_client("curl", fake_api, "gemini-stream-array").wait().check()
    chunks = json.loads(array.result["body"])
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == Reply().text
    bulk = start_client("python-httpx", fake_api, "bulk").wait().check()
    assert len(bulk.result["body"]) == 65536 and bulk.result["http_version"] == "HTTP/1.1"


def test_sse_event_count_and_size(fake_api: FakeApi) -> None:
    fake_api.script(Reply(events=20, event_size=3000))
    run = start_client("curl", fake_api, "anthropic-stream").wait().check()
    ex = fake_api.wait_for(1)[0]
    deltas = [e for e in ex.events if b"text_delta" in e]
    assert len(deltas) == 20
    assert [d["delta"]["text"] for d in ex.sse_data() if d["type"] == "content_block_delta"] == \
        Reply(events=20, event_size=3000).text_pieces()
    assert run.result["body"].encode() == ex.response_body == b"".join(ex.events)


def test_tls_offers_only_http11(fake_api: FakeApi, certs) -> None:
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", fake_api.port)) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.selected_alpn_protocol() == "http/1.1"


def test_untrusting_client_is_reported(fake_api: FakeApi) -> None:
    ctx = ssl.create_default_context()  # system roots only: our throwaway CA is not in them
    with socket.create_connection(("127.0.0.1", fake_api.port)) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            ctx.wrap_socket(raw, server_hostname="localhost")
    for _ in range(100):
        if fake_api.connection_errors:
            break
        time.sleep(0.02)
    assert fake_api.connection_errors and fake_api.connection_errors[0][0] == 1


def test_sdk_reuses_keep_alive_connection(fake_api: FakeApi) -> None:
    run = start_client("python-openai", fake_api, "chat", repeat=3).wait().check()
    assert [r["text"] for r in run.results] == [Reply().text] * 3
    assert len({ex.conn for ex in fake_api.wait_for(3)}) == 1


def test_plain_http_and_unknown_route(fake_api_plain: FakeApi) -> None:
    run = start_client("python-httpx", fake_api_plain, "openai-chat").wait().check()
    assert json.loads(run.result["body"])["choices"][0]["message"]["content"] == Reply().text
    with socket.create_connection(("127.0.0.1", fake_api_plain.port)) as sock:
        sock.sendall(b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 404 ")


@pytest.mark.parametrize("status", [400, 500])
def test_error_shapes_per_status(fake_api: FakeApi, status: int) -> None:
    fake_api.script(Reply(status=status))
    start_client("curl", fake_api, "anthropic").wait().check()
    body = fake_api.wait_for(1)[0].response_json()
    assert body["type"] == "error" and body["error"]["type"] in ("invalid_request_error", "api_error")


NODE_CASES = [
    ("node-anthropic", "stream", SCRIPTED),
    ("node-anthropic", "tools", Reply(text="", tool_calls=[WEATHER])),
    ("node-openai", "chat-stream", SCRIPTED),
    ("node-openai", "chat-tools", Reply(text="", tool_calls=[WEATHER])),
    ("node-openai", "responses-stream", SCRIPTED),
]


def test_node_sdks_parse_fake_answers(fake_api: FakeApi) -> None:
    runs = run_each(fake_api, NODE_CASES)
    exchanges = fake_api.wait_for(len(NODE_CASES))
    for run, (kind, mode, reply), ex in zip(runs, NODE_CASES, exchanges):
        assert_matches(run, reply, "stream" in mode)
        assert ex.header(KEY_HEADER[kind]).endswith(run.api_key)
        assert ex.raw_request.startswith(f"POST {ex.target} HTTP/1.1\r\n".encode())


@pytest.mark.parametrize("kind", ["python-mcp", "node-mcp", "node-jsonrpc"])
def test_mcp_stdio_sessions(kind: str) -> None:
    run = start_client(kind).wait().check()
    result = run.result
    assert result["server_name"] == "agtap-test-server"
    assert result["tools"] == ["add", "big", "echo", "fail", "sleep"]
    assert result["text"] == "5" and result["is_error"] is False
    assert isinstance(result["server_pid"], int) and result["server_pid"] != run.pid


def test_in_stream_errors_and_routed_replies(fake_api: FakeApi) -> None:
    # Scripted out of order on purpose: `route` sends each reply to its provider's path.
    fake_api.script(Reply(stream_error=True, route="/v1/chat/completions"),
                    Reply(stream_error=True, route="/v1/messages", error_message="mid-stream"))
    procs = [start_client("node-anthropic", fake_api, "stream"),
             start_client("node-openai", fake_api, "chat-stream")]
    anthropic_run, openai_run = (p.wait().check() for p in procs)
    assert anthropic_run.result["error"] == {"status": None, "type": "overloaded_error", "message": "mid-stream"}
    assert openai_run.result["error"]["type"] == "server_error"


def test_case_matrix_names_real_modes() -> None:
    for case in LLM_CASES + MCP_CASES + VERTEX_CASES + OTHER_CASES:
        assert case.mode in MODES[case.kind], case
    assert {c.kind for c in LLM_CASES + MCP_CASES} == set(MODES)


def test_abrupt_endings_on_both_sides(fake_api: FakeApi) -> None:
    # Server cuts the stream: curl reports a transfer closed early (exit 18).
    fake_api.script(Reply(events=10, drop_after=4))
    cut = start_client("curl", fake_api, "anthropic-stream").wait()
    assert cut.returncode == 18
    ex = fake_api.wait_for(1)[0]
    assert ex.dropped and len(ex.events) == 4 and not ex.raw_response.endswith(b"0\r\n\r\n")
    # Client dies mid-stream: the server records what it had sent when the write failed.
    fake_api.script(Reply(events=40, event_delay=0.02))
    died = start_client("node-openai", fake_api, "chat-stream", exit_after=3).wait().check()
    assert died.result["aborted"] is True
    ex = fake_api.wait_for(2)[1]
    assert ex.client_gone and 3 <= len(ex.events) < 40


def test_large_prompt_and_parallel_calls(fake_api: FakeApi) -> None:
    big = start_client("python-requests", fake_api, "anthropic", prompt_size=300_000).wait().check()
    ex = fake_api.wait_for(1)[0]
    assert len(ex.json()["messages"][0]["content"]) == 300_000 and big.result["status"] == 200
    par = start_client("node-anthropic", fake_api, "nonstream", parallel=3).wait().check()
    assert len(par.results) == 3
    assert len({e.conn for e in fake_api.wait_for(4)[1:]}) == 3  # three requests in flight at once


def test_mcp_big_frames_and_tool_errors() -> None:
    big = start_client("node-jsonrpc", tool="big", arguments={"n": 200_000}).wait().check()
    assert len(big.result["text"]) == 200_000  # far more than one 64 KiB pipe/socket read
    failed = start_client("node-mcp", tool="fail", arguments={"message": "boom"}).wait().check()
    assert failed.result["is_error"] is True and failed.result["text"].startswith("Error executing tool")


def test_vertex_routes(fake_api: FakeApi) -> None:
    gemini = start_client("python-gemini", fake_api, "vertex-stream", wait_go=True)
    claude = start_client("curl", fake_api, "vertex-anthropic-stream").wait().check()
    assert "event: message_stop" in claude.result["body"]
    assert gemini.go().wait().check().result["text"] == Reply().text
    first, second = fake_api.wait_for(2)
    assert first.path.endswith("/publishers/anthropic/models/claude-sonnet-5:streamRawPredict")
    assert second.path == "/v1beta1/publishers/google/models/gemini-2.5-flash:streamGenerateContent"
