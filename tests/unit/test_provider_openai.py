"""OpenAI Chat Completions and Responses through the pipeline (fixture sources in tests/fixtures/providers/README.md)."""

from __future__ import annotations

import pytest

from tests.support.harness import (Run, end_chunked, fixture, request, response, stream_sse)

HOST = "api.openai.com"
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "weather in Boston?"}]}


def test_chat_non_streaming_tool_calls_cached_tokens():
    r = Run()
    r.out(request("/v1/chat/completions", CHAT, host=HOST), 0)
    r.inn(response(fixture("openai_chat_tool.json")), 400)
    c = r.one()
    assert (c.provider, c.operation, c.model, c.response_model) == ("openai", "chat", "gpt-4o", "gpt-4o-2024-08-06")
    assert (c.input_tokens, c.output_tokens, c.cache_read_input_tokens, c.thoughts_tokens) == (82, 17, 64, 0)
    assert c.tools == ["get_current_weather"] and c.stop_reason == "tool_calls"
    assert c.id == "chatcmpl-abc123" and c.streaming is False
    # gpt-4o: $2.50 in, $1.25 cached in, $10 out; prompt_tokens include the 64 cached
    assert c.cost_usd == pytest.approx(((82 - 64) * 2.5 + 64 * 1.25 + 17 * 10) / 1e6)


def test_cache_write_tokens_are_cache_creation():
    """Newer usage blocks count cache writes apart (prompt/input_tokens_details.cache_write_tokens)."""
    for path, usage in [
        ("/v1/chat/completions", {"prompt_tokens": 4020, "completion_tokens": 4, "total_tokens": 4024,
                                  "prompt_tokens_details": {"cached_tokens": 4012, "cache_write_tokens": 0}}),
        ("/v1/responses", {"input_tokens": 4020, "output_tokens": 4, "total_tokens": 4024,
                           "input_tokens_details": {"cached_tokens": 3000, "cache_write_tokens": 1012}}),
    ]:
        r = Run()
        r.out(request(path, {"model": "gpt-4o", "input": "hi"}, host=HOST), 0)
        if path.endswith("responses"):
            body = {"id": "resp_1", "object": "response", "status": "completed", "model": "gpt-4o",
                    "output": [], "usage": usage}
        else:
            body = {"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o", "usage": usage,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                 "finish_reason": "stop"}]}
        r.inn(response(body), 10)
        c = r.one()
        details = usage.get("prompt_tokens_details") or usage["input_tokens_details"]
        assert (c.input_tokens, c.cache_read_input_tokens, c.cache_creation_input_tokens) == \
            (4020, details["cached_tokens"], details["cache_write_tokens"])
        # gpt-4o: $2.50 in, $1.25 cached; a write without a price of its own costs input
        fresh = 4020 - details["cached_tokens"] - details["cache_write_tokens"]
        assert c.cost_usd == pytest.approx((fresh * 2.5 + details["cached_tokens"] * 1.25
                                            + details["cache_write_tokens"] * 2.5 + 4 * 10) / 1e6)


def test_chat_streaming_tool_call_deltas_and_usage_chunk():
    r = Run()
    body = dict(CHAT, model="gpt-4o-mini", stream=True, stream_options={"include_usage": True})
    r.out(request("/v1/chat/completions", body, host=HOST), 0)
    stream_sse(r, fixture("openai_chat_stream_tool.sse"), 100)
    end_chunked(r, 250)
    c = r.one()
    # names come once each, from the first delta of each tool index; arguments deltas add none
    assert c.tools == ["get_weather", "get_time"]
    assert c.stop_reason == "tool_calls"
    assert (c.input_tokens, c.output_tokens) == (120, 31)
    # comment 100, role-only delta 110 (no content), first tool delta 120
    assert c.ttft_ms == 120.0 and c.latency_ms == 250.0
    assert c.streaming and c.response_model == "gpt-4o-mini-2024-07-18"
    assert not c.incomplete and r.p.stats.parse_errors == 0   # `data: [DONE]` is not an error


def test_chat_streaming_text_with_compatible_server_path():
    r = Run(transport=__import__("agtap.capture.chunk", fromlist=["Transport"]).Transport.SOCKET, conn="sock:9:5")
    r.out(request("/openai/v1/chat/completions", dict(CHAT, model="gpt-4.1", stream=True), host="localhost:8000"), 0)
    stream_sse(r, fixture("openai_chat_stream_text.sse"), 10, step=5)
    end_chunked(r, 60)
    c = r.one()
    assert c.server_address == "localhost" and c.server_port == 8000 and c.transport == "socket"
    assert c.stop_reason == "stop" and c.tools == []
    assert (c.input_tokens, c.output_tokens, c.cache_read_input_tokens) == (1000, 200, 400)
    assert c.ttft_ms == 20.0  # comment 10, empty-content delta 15, "Hello" 20
    assert not c.incomplete and r.p.stats.parse_errors == 0
    assert c.cost_usd == pytest.approx((600 * 2.0 + 400 * 0.5 + 200 * 8.0) / 1e6)


def test_chat_error_object():
    r = Run()
    r.out(request("/v1/chat/completions", CHAT, host=HOST), 0)
    err = {"error": {"message": "Rate limit reached for gpt-4o", "type": "requests", "param": None,
                     "code": "rate_limit_exceeded"}}
    r.inn(response(err, status=429), 3)
    c = r.one()
    assert c.stop_reason == "error:rate_limit_exceeded" and c.http_status == 429
    r2 = Run()
    r2.out(request("/v1/chat/completions", CHAT, host=HOST), 0)
    r2.inn(response({"error": {"message": "bad", "type": "invalid_request_error", "param": "x", "code": None}},
                    status=400), 3)
    assert r2.one().stop_reason == "error:invalid_request_error"


def test_azure_model_is_the_answering_model_else_the_deployment():
    # A deployment is a name the user chose; the response says which model answered.
    r = Run()
    r.out(request("/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21",
                  {"messages": []}, host="x.openai.azure.com"), 0)
    r.inn(response(fixture("openai_chat_tool.json")), 3)
    c = r.one()
    assert c.model == c.response_model == "gpt-4o-2024-08-06" and c.platform == "azure_openai"
    # no model in the answer (an error, or a server that leaves it out): the deployment
    r2 = Run()
    r2.out(request("/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21",
                   {"model": "ignored-body-model", "messages": []}, host="x.openai.azure.com"), 0)
    r2.inn(response({"error": {"message": "no quota", "type": "requests", "code": "429"}}, status=429), 3)
    c2 = r2.one()
    assert c2.model == "my-gpt4o" and c2.response_model is None and c2.stop_reason == "error:429"


def test_responses_non_streaming_function_call():
    r = Run()
    r.out(request("/v1/responses", {"model": "gpt-4.1", "input": "weather?"}, host=HOST), 0)
    r.inn(response(fixture("openai_responses_tool.json")), 90)
    c = r.one()
    assert (c.operation, c.model, c.response_model) == ("responses", "gpt-4.1", "gpt-4.1-2025-04-14")
    assert (c.input_tokens, c.output_tokens, c.cache_read_input_tokens, c.thoughts_tokens) == (291, 23, 128, 7)
    assert c.tools == ["get_current_weather"] and c.stop_reason == "completed"
    assert c.id == "resp_67ccd2bed1ec8190b14f964abc054267"


def test_responses_streaming():
    r = Run()
    r.out(request("/v1/responses", {"model": "o4-mini", "input": "hi", "stream": True}, host=HOST), 0)
    stream_sse(r, fixture("openai_responses_stream.sse"), 100)
    end_chunked(r, 200)
    c = r.one()
    assert c.streaming and c.stop_reason == "completed"
    assert c.tools == ["lookup_order"]   # from output_item.added, not counted again at completed
    assert (c.input_tokens, c.output_tokens, c.thoughts_tokens) == (37, 11, 4)
    assert c.ttft_ms == 140.0  # comment, created, in_progress, item added, first text delta at 140
    assert c.cost_usd == pytest.approx((37 * 1.10 + 11 * 4.40) / 1e6)


def test_responses_incomplete_and_failed():
    r = Run()
    r.out(request("/v1/responses", {"model": "gpt-5", "input": "x"}, host=HOST), 0)
    r.inn(response({"id": "resp_1", "object": "response", "status": "incomplete", "model": "gpt-5-2025-08-07",
                    "incomplete_details": {"reason": "max_output_tokens"}, "output": [],
                    "usage": {"input_tokens": 5, "output_tokens": 16}}), 3)
    r.out(request("/v1/responses", {"model": "gpt-5", "input": "x", "stream": True}, host=HOST), 10)
    sse = (b'event: response.failed\ndata: {"type":"response.failed","response":{"id":"resp_2","object":"response",'
           b'"status":"failed","error":{"code":"server_error","message":"oops"},"output":[],"usage":null}}\n\n')
    stream_sse(r, sse, 20)
    end_chunked(r, 30)
    a, b = r.calls
    assert a.stop_reason == "max_output_tokens" and a.output_tokens == 16
    assert b.stop_reason == "error:server_error" and b.id == "resp_2"


def test_responses_stream_error_event():
    r = Run()
    r.out(request("/v1/responses", {"model": "gpt-5", "input": "x", "stream": True}, host=HOST), 0)
    stream_sse(r, b'event: error\ndata: {"type":"error","code":"ERR_SOMETHING","message":"bad","param":null}\n\n', 5)
    end_chunked(r, 6)
    assert r.one().stop_reason == "error:ERR_SOMETHING"


def test_fast_path_never_hides_a_finish_reason_of_another_choice():
    r = Run()
    r.out(request("/v1/chat/completions", dict(CHAT, stream=True, n=2), host=HOST), 0)
    sse = (b'data: {"id":"c","model":"gpt-4o","choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}\n\n'
           b'data: {"id":"c","model":"gpt-4o","choices":[{"index":0,"delta":{"content":"b"},"finish_reason":null},'
           b'{"index":1,"delta":{},"finish_reason":"length"}]}\n\n'
           b'data: [DONE]\n\n')
    stream_sse(r, sse, 5)
    end_chunked(r, 30)
    c = r.one()
    assert c.stop_reason == "length" and c.ttft_ms == 5.0


def test_azure_responses_and_the_v1_paths():
    r = Run()
    r.out(request("/openai/deployments/my-4-1/responses?api-version=2025-04-01-preview", {"input": "weather?"},
                  host="x.openai.azure.com"), 0)
    r.inn(response(fixture("openai_responses_tool.json")), 9)
    c = r.one()
    assert (c.operation, c.model, c.tools) == ("responses", "gpt-4.1-2025-04-14", ["get_current_weather"])
    # /openai/responses?api-version=...: where AzureOpenAI sends Responses calls, the deployment in the body
    r1 = Run()
    r1.out(request("/openai/responses?api-version=2025-04-01-preview", {"model": "my-4-1", "input": "weather?"},
                   host="x.openai.azure.com"), 0)
    r1.inn(response(fixture("openai_responses_tool.json")), 9)
    assert r1.one().model == "gpt-4.1-2025-04-14"
    # /openai/v1/...: no deployment in the path, the body names it
    for path, op in (("/openai/v1/chat/completions", "chat"), ("/openai/v1/responses", "responses")):
        r2 = Run()
        r2.out(request(path, {"model": "my-deploy", "input": "x", "messages": []}, host="x.openai.azure.com"), 0)
        r2.inn(response({"error": {"code": "429", "message": "no"}}, status=429), 9)
        c2 = r2.one()
        assert (c2.operation, c2.model, c2.stop_reason) == (op, "my-deploy", "error:429")
