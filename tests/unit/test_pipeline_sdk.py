"""The official clients' real bytes through the pipeline.

The official SDKs (anthropic, openai, google-genai, node SDKs, curl) call the local
plain-HTTP fake API (tests/support); the exact bytes each side wrote on the socket
(Exchange.raw_request / raw_response) are fed to a Pipeline as the capture layer
would hand them over, in uneven pieces. What the pipeline reports must match what
was scripted: this checks the parsers against the requests real clients send
(paths, query strings, headers, compression) rather than against our own fixtures.
"""

from __future__ import annotations

import os

import pytest

from tests.support.harness import Run
from tests.support import Reply, ToolCall, run_client
from tests.support.cases import LLM_CASES, OTHER_CASES, VERTEX_CASES

# One of each provider x {stream, non-stream, tools} from the Python SDKs, plus the
# shapes only other clients produce (Gemini's JSON-array stream via curl, node, httpx).
PICK = {"python-anthropic:stream", "python-anthropic:nonstream", "python-anthropic:tools-stream",
        "python-openai:chat-stream", "python-openai:chat-tools", "python-openai:responses-stream",
        "python-openai:responses-tools", "python-gemini:stream", "python-gemini:tools",
        "curl:gemini-stream-array", "node-openai:chat-tools", "python-httpx:gemini-stream"}
# AGTAP_SDK_ALL=1 runs every client case (about 20 s) instead of the pick.
CASES = [c for c in LLM_CASES if str(c) in PICK or os.environ.get("AGTAP_SDK_ALL")] + VERTEX_CASES + OTHER_CASES


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
    assert (c.provider, c.platform, c.operation, c.streaming) == \
        (case.provider, case.platform, case.operation, case.streaming)
    assert not c.incomplete, c.incomplete_reason
    assert c.input_tokens == 31 and c.output_tokens == 7
    assert c.cache_read_input_tokens == 5
    assert c.tools == (["get_weather"] if case.tools else [])
    assert c.stop_reason in ("end_turn", "tool_use", "stop", "tool_calls", "completed", "STOP")
    assert c.http_status == 200 and c.server_address in ("127.0.0.1", "localhost")
    assert c.request_bytes == len(ex.raw_request) and c.response_bytes == len(ex.raw_response)
    if case.streaming:
        assert c.ttft_ms is not None


ERR_KINDS = [("python-anthropic", "stream", "error:rate_limit_error", "error:overloaded_error"),
             ("python-openai", "chat-stream", None, None),
             ("python-gemini", "stream", "error:RESOURCE_EXHAUSTED", None)]


@pytest.mark.parametrize("kind,mode,http_err,stream_err", ERR_KINDS, ids=lambda v: str(v))
def test_official_client_errors_and_drops(kind, mode, http_err, stream_err, fake_api_plain):
    api = fake_api_plain
    api.script(Reply(status=429))
    run_client(kind, api, mode)           # the client fails; its bytes are what matter
    (ex,) = api.wait_for(1)
    r = Run(conn="sock:1:2")
    feed_exchange(r, ex, 0)
    c = r.one()
    assert c.http_status == 429 and c.stop_reason.startswith("error:")
    if http_err:
        assert c.stop_reason == http_err

    if stream_err or kind == "python-openai":
        api.reset()
        api.script(Reply(stream_error=True, input_tokens=9, output_tokens=3))
        run_client(kind, api, mode)
        (ex,) = api.wait_for(1)
        r = Run(conn="sock:1:3")
        feed_exchange(r, ex, 0)
        c = r.one()
        assert c.stop_reason.startswith("error:") and c.http_status == 200
        if stream_err:
            assert c.stop_reason == stream_err

    api.reset()
    api.script(Reply(events=10, drop_after=4, input_tokens=9, output_tokens=3))
    run_client(kind, api, mode)
    (ex,) = api.wait_for(1)
    r = Run(conn="sock:1:4")
    feed_exchange(r, ex, 0)
    r.close(5000)
    c = r.one(clean=False)
    assert c.incomplete and c.incomplete_reason == "connection_closed" and c.ttft_ms is not None
