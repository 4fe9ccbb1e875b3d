"""The official clients' real bytes through the pipeline.

The official SDKs (anthropic, openai, google-genai, node SDKs, curl) call the local
plain-HTTP fake API (tests/support); the exact bytes each side wrote on the socket
(Exchange.raw_request / raw_response) are fed to a Pipeline as the capture layer
would hand them over, in uneven pieces. What the pipeline reports must match what
was scripted: this checks the parsers against the requests real clients send
(paths, query strings, headers, compression) rather than against our own fixtures.
"""

from __future__ import annotations

import pytest

from tests.fixtures.providers.harness import Run
from tests.support import Reply, ToolCall, run_client
from tests.support.cases import LLM_CASES

# One of each provider x {stream, non-stream, tools} from the Python SDKs, plus the
# shapes only other clients produce (Gemini's JSON-array stream via curl, node, httpx).
PICK = {"python-anthropic:stream", "python-anthropic:nonstream", "python-anthropic:tools-stream",
        "python-openai:chat-stream", "python-openai:chat-tools", "python-openai:responses-stream",
        "python-openai:responses-tools", "python-gemini:stream", "python-gemini:tools",
        "curl:gemini-stream-array", "node-openai:chat-tools", "python-httpx:gemini-stream"}
CASES = [c for c in LLM_CASES if str(c) in PICK]


def feed_exchange(r: Run, ex, t0: float, piece: int = 777) -> None:
    req, resp = ex.raw_request, ex.raw_response
    for i in range(0, len(req), piece):
        r.out(req[i:i + piece], t0 + i / 1e6)
    for i in range(0, len(resp), piece):
        r.inn(resp[i:i + piece], t0 + 50 + i / 1e6)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_official_client_bytes(case, fake_api_plain):
    api = fake_api_plain
    tools = [ToolCall("get_weather", {"city": "Paris"})] if case.tools else []
    api.script(Reply(text="Hi there from the fake", input_tokens=31, output_tokens=7,
                     cache_read_input_tokens=5, tool_calls=tools))
    run_client(case.kind, api, case.mode).check()
    (ex,) = api.wait_for(1)
    assert ex.raw_request and ex.raw_response
    r = Run(conn="sock:1:1")
    feed_exchange(r, ex, 0)
    r.close(1000)
    c = r.one()
    assert (c.provider, c.operation, c.streaming) == (case.provider, case.operation, case.streaming)
    assert not c.incomplete, c.incomplete_reason
    assert c.input_tokens == 31 and c.output_tokens == 7
    assert c.cache_read_input_tokens == 5
    assert c.tools == (["get_weather"] if case.tools else [])
    assert c.stop_reason in ("end_turn", "tool_use", "stop", "tool_calls", "completed", "STOP")
    assert c.http_status == 200 and c.server_address == "127.0.0.1"
    assert c.request_bytes == len(ex.raw_request) and c.response_bytes == len(ex.raw_response)
    if case.streaming:
        assert c.ttft_ms is not None
