"""Anthropic Messages API through the whole pipeline (fixture sources in tests/fixtures/providers/README.md)."""

from __future__ import annotations

import pytest

from tests.support.harness import (Run, end_chunked, fixture, request, response, stream_sse)

REQ = {"model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": True,
       "messages": [{"role": "user", "content": "What's the weather like in San Francisco?"}],
       "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}]}


def test_streaming_tool_use_fields_and_timing():
    r = Run()
    r.out(request("/v1/messages", REQ), 0)
    # Events go out 10 ms apart from t=100: the comment line, message_start, content_block_start,
    # ping, then the first content_block_delta at t=140 -> that is the first token.
    times = stream_sse(r, fixture("anthropic_stream_tool.sse"), 100)
    end_chunked(r, 300)
    c = r.one()
    assert (c.provider, c.kind, c.operation) == ("anthropic", "llm_call", "chat")
    assert c.model == "claude-sonnet-4-5"
    assert c.response_model == "claude-sonnet-4-5-20250929"
    assert c.id == "msg_014p7gG3wDgGV9EUtLvnow3U" and c.platform == "anthropic"
    assert c.streaming is True
    assert (c.input_tokens, c.output_tokens) == (472, 89)  # output: message_delta's cumulative count
    assert (c.cache_creation_input_tokens, c.cache_read_input_tokens) == (100, 50)
    assert c.stop_reason == "tool_use"
    assert c.tools == ["get_weather"]
    assert times[4] == 140
    assert c.ttft_ms == 140.0
    assert c.latency_ms == 300.0
    assert c.http_status == 200
    assert c.server_address == "api.anthropic.com" and c.server_port == 443
    assert (c.pid, c.proc, c.transport, c.unit) == (4242, "python3", "tls", "agent.service")
    assert c.ts.startswith("2026-11-18T") and c.ts.endswith("Z")
    assert len(c.event_id) == 32 and not c.incomplete
    # sonnet-4-5: $3 in, $15 out, $0.30 cache read, $3.75 cache write per MTok
    assert c.cost_usd == pytest.approx((472 * 3 + 89 * 15 + 50 * 0.30 + 100 * 3.75) / 1e6)
    assert c.bodies.request_target == "POST /v1/messages"
    assert b'"claude-sonnet-4-5"' in c.bodies.request_body
    assert c.bodies.response_body.startswith(b": source") and b"message_stop" in c.bodies.response_body
    assert c.request_bytes == len(request("/v1/messages", REQ))


def test_non_streaming_tool_use():
    r = Run()
    body = fixture("anthropic_message_tool.json")
    r.out(request("/anthropic/v1/messages?beta=true", dict(REQ, stream=False, model="claude-opus-4-5")), 0)
    r.inn(response(body), 850)
    c = r.one()
    assert c.streaming is False
    assert c.model == "claude-opus-4-5" and c.response_model == "claude-opus-4-5-20251101"
    assert (c.input_tokens, c.output_tokens, c.cache_creation_input_tokens, c.cache_read_input_tokens) == (2095, 503, 1000, 2000)
    assert c.tools == ["get_weather"] and c.stop_reason == "tool_use"
    assert c.latency_ms == 850.0 and c.ttft_ms is None
    assert c.bodies.response_body == body
    assert c.response_bytes == len(response(body))
    assert c.cost_usd == pytest.approx((2095 * 5 + 503 * 25 + 1000 * 6.25 + 2000 * 0.5) / 1e6)


def test_http_error_rate_limit():
    r = Run()
    r.out(request("/v1/messages", REQ), 0)
    r.inn(response(fixture("anthropic_error_429.json"), status=429), 20)
    c = r.one()
    assert c.http_status == 429
    assert c.stop_reason == "error:rate_limit_error" and c.error_type == "rate_limit_error"
    assert c.input_tokens is None and c.cost_usd is None and not c.incomplete


def test_mid_stream_error_event():
    r = Run()
    r.out(request("/v1/messages", dict(REQ, model="claude-haiku-4-5")), 0)
    stream_sse(r, fixture("anthropic_stream_error.sse"), 50)
    end_chunked(r, 200)
    c = r.one()
    assert c.stop_reason == "error:overloaded_error"
    assert (c.input_tokens, c.output_tokens) == (25, 1)
    assert c.ttft_ms == 80.0   # comment 50, message_start 60, block_start 70, first delta 80


def test_html_error_without_json_body():
    r = Run()
    r.out(request("/v1/messages", REQ), 0)
    r.inn(response(b"<html>bad gateway</html>", status=502, content_type="text/html"), 5)
    c = r.one()
    assert c.stop_reason == "error:http_502" and c.http_status == 502


def test_count_tokens_and_batches_are_not_calls():
    r = Run()
    r.out(request("/v1/messages/count_tokens", REQ), 0)
    r.inn(response({"input_tokens": 10}), 5)
    assert r.calls == [] and r.ignored == [r.conn]


def test_claude_on_vertex_raw_predict():
    # https://docs.anthropic.com/en/api/claude-on-vertex-ai: model in the URL, anthropic_version in the body
    r = Run()
    path = "/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:streamRawPredict"
    r.out(request(path, {"anthropic_version": "vertex-2023-10-16", "stream": True, "max_tokens": 5, "messages": []},
                  host="us-east5-aiplatform.googleapis.com"), 0)
    stream_sse(r, fixture("anthropic_stream_tool.sse"), 10)
    end_chunked(r, 200)
    c = r.one()
    assert (c.provider, c.platform) == ("anthropic", "vertex_ai")   # the Messages API, served by Vertex AI
    assert c.model == "claude-sonnet-4-5@20250929" and c.output_tokens == 89
    # priced as Claude: cache reads/writes on top of input_tokens
    assert c.cost_usd == pytest.approx((472 * 3 + 89 * 15 + 50 * 0.30 + 100 * 3.75) / 1e6)
