"""Real provider exchanges to mutate: (egress?, bytes) conversations, one per seed.

Built from tests/fixtures/providers (recorded shapes of each provider's wire
format), plus gzip, chunked framing, keep-alive pairs, MCP stdio and MCP over
HTTP, HTTP/2 (written by python3-h2) and hostile HTTP/2 peers, so mutations
start from bytes every parser layer really sees.
"""

from __future__ import annotations

import gzip
import json
import zlib

from tests.support import eventstream
from tests.support.h2wire import hostile_shapes, real_conversation
from tests.support.harness import chunk_frame, fixture, request, response, response_head, sse_blocks

SSE_HEAD = {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"}
ES_HEAD = {"Content-Type": "application/vnd.amazon.eventstream", "Transfer-Encoding": "chunked"}
NDJSON_HEAD = {"Content-Type": "application/x-ndjson", "Transfer-Encoding": "chunked"}


def _chunked_sse(name: str) -> bytes:
    return b"".join(chunk_frame(b) for b in sse_blocks(fixture(name))) + b"0\r\n\r\n"


def _mcp(msg: dict) -> bytes:
    return json.dumps(msg).encode() + b"\n"


def _chunked(pieces: list[bytes]) -> bytes:
    return b"".join(chunk_frame(p) for p in pieces) + b"0\r\n\r\n"


def bedrock_stream() -> bytes:
    """A ConverseStream body (binary AWS event stream) from the fixture's events."""
    return b"".join(eventstream.event(n, p) for n, p in json.loads(fixture("bedrock_converse_stream_tool.json")))


def seeds() -> list[list[tuple[bool, bytes]]]:
    a_req = request("/v1/messages", {"model": "claude-sonnet-4-5", "stream": True, "max_tokens": 64,
                                     "messages": [{"role": "user", "content": "hi"}]},
                    headers={"x-api-key": "sk-ant-fuzzfuzzfuzzfuzz", "Accept-Encoding": "gzip"})
    o_req = request("/v1/chat/completions", {"model": "gpt-4o", "stream": True,
                                             "messages": [{"role": "user", "content": "hi"}]},
                    host="api.openai.com", headers={"Authorization": "Bearer sk-fuzzfuzzfuzzfuzzfuzzfuzz1"})
    g_req = request("/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse&key=AIzaFUZZ", {"contents": []},
                    host="generativelanguage.googleapis.com")
    body_json = fixture("anthropic_message_tool.json")
    gz = gzip.compress(body_json)
    deflated = zlib.compress(fixture("openai_chat_tool.json"))
    mcp_req = _mcp({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "add", "arguments": {}}})
    mcp_resp = _mcp({"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "3"}]}})
    return [
        [(True, a_req), (False, response_head(200, SSE_HEAD) + _chunked_sse("anthropic_stream_tool.sse"))],
        [(True, a_req), (False, response_head(200, SSE_HEAD) + _chunked_sse("anthropic_stream_error.sse"))],
        [(True, a_req.replace(b'"stream": true', b'"stream": false')),
         (False, response(gz, headers={"Content-Encoding": "gzip"}))],
        [(True, a_req), (False, response(fixture("anthropic_error_429.json"), status=429))],
        [(True, o_req), (False, response_head(200, SSE_HEAD) + _chunked_sse("openai_chat_stream_tool.sse"))],
        [(True, o_req), (False, response_head(200, SSE_HEAD) + _chunked_sse("openai_chat_stream_text.sse"))],
        [(True, o_req.replace(b"/chat/completions", b"/chat/completions")),
         (False, response(deflated, headers={"Content-Encoding": "deflate"}))],
        [(True, request("/v1/responses", {"model": "o3", "stream": True}, host="api.openai.com")),
         (False, response_head(200, {"Content-Type": "text/event-stream",
                                     "Content-Length": str(len(fixture("openai_responses_stream.sse")))})
          + fixture("openai_responses_stream.sse"))],
        [(True, request("/v1/responses", {"model": "o3"}, host="api.openai.com")),
         (False, response(fixture("openai_responses_tool.json")))],
        [(True, g_req), (False, response_head(200, SSE_HEAD) + _chunked_sse("gemini_stream.sse"))],
        [(True, request("/v1beta/models/gemini-2.5-pro:streamGenerateContent", {}, host="g")),
         (False, response(fixture("gemini_stream_array.json")))],
        [(True, request("/v1beta/models/gemini-2.5-pro:generateContent", {}, host="g")),
         (False, response(fixture("gemini_response.json")))],
        [(True, request("/v1beta/models/gemini-2.5-pro:generateContent", {}, host="g")),
         (False, response(fixture("gemini_error_429.json"), status=429))],
        # keep-alive: two exchanges on one connection
        [(True, a_req), (False, response(body_json)), (True, a_req), (False, response(body_json))],
        # MCP stdio and MCP over streamable HTTP
        [(True, mcp_req), (False, mcp_resp)],
        [(True, _mcp({"jsonrpc": "2.0", "method": "notifications/initialized"})), (True, mcp_req),
         (False, _mcp({"jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": "nope"}}))],
        [(True, request("/mcp", json.loads(mcp_req), host="h", headers={"Mcp-Session-Id": "s1"})),
         (False, response_head(200, SSE_HEAD) + chunk_frame(b"event: message\ndata: " + mcp_resp + b"\n")
          + b"0\r\n\r\n")],
        # HTTP/2: a real client's and server's bytes (python3-h2)
        real_conversation(),
        # AWS Bedrock: ConverseStream and InvokeModelWithResponseStream (event streams), InvokeModel
        [(True, request("/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse-stream", {"messages": []},
                        host="bedrock-runtime.us-east-1.amazonaws.com")),
         (False, response_head(200, ES_HEAD) + _chunked([bedrock_stream()]))],
        [(True, request("/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/invoke-with-response-stream",
                        {"anthropic_version": "bedrock-2023-05-31", "messages": []}, host="b")),
         (False, response_head(200, ES_HEAD) + _chunked(
             [eventstream.chunk(e) for e in json.loads(fixture("bedrock_invoke_anthropic_stream.json"))]))],
        [(True, request("/model/amazon.titan-embed-text-v2%3A0/invoke", {"inputText": "x"}, host="b")),
         (False, response(fixture("bedrock_titan_embed.json"), headers={"X-Amzn-Bedrock-Input-Token-Count": "11"}))],
        # Ollama's native API: an NDJSON stream over plain HTTP
        [(True, request("/api/chat", {"model": "llama3.2", "messages": []}, host="127.0.0.1:11434")),
         (False, response_head(200, NDJSON_HEAD) + _chunked(fixture("ollama_chat_stream_tool.ndjson")
                                                          .splitlines(keepends=True)))],
    ]


def hostile() -> list[list[tuple[bool, bytes]]]:
    """Hostile HTTP/2 peers' shapes (a 16 MiB frame length, a header frame as long, an HPACK bomb,
    endless CONTINUATION, hundreds of streams): they make no call, or incomplete ones."""
    return list(hostile_shapes(scale=1).values())
