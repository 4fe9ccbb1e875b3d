"""Gemini (Google AI) and Vertex AI generateContent through the pipeline (sources: tests/fixtures/providers/README.md)."""

from __future__ import annotations

import pytest

from tests.support.harness import (Run, chunk_frame, end_chunked, fixture, request, response,
                                              response_head, stream_sse)

HOST = "generativelanguage.googleapis.com"
BODY = {"contents": [{"role": "user", "parts": [{"text": "Capital of France?"}]}]}


def test_non_streaming_generate_content():
    r = Run()
    r.out(request("/v1beta/models/gemini-2.5-flash:generateContent", BODY, host=HOST,
                  headers={"x-goog-api-key": "AIza-secret"}), 0)
    r.inn(response(fixture("gemini_response.json")), 700)
    c = r.one()
    assert (c.provider, c.platform, c.operation, c.model) == ("google", "gemini", "generate_content", "gemini-2.5-flash")
    assert (c.input_tokens, c.output_tokens, c.thoughts_tokens, c.cache_read_input_tokens) == (8, 7, 30, 0)
    assert c.stop_reason == "STOP" and c.id == "mQfGaNqCJ9KW1PIP5cT7kAM"
    assert c.response_model == "gemini-2.5-flash" and not c.streaming and c.latency_ms == 700.0
    # flash: $0.30 in, $2.50 out; thinking tokens are billed as output
    assert c.cost_usd == pytest.approx((8 * 0.30 + (7 + 30) * 2.50) / 1e6)


def test_json_array_stream_elements_timed_as_they_complete():
    r = Run()
    r.out(request("/v1beta/models/gemini-2.5-pro:streamGenerateContent", BODY, host=HOST), 0)
    r.inn(response_head(200, {"Content-Type": "application/json; charset=UTF-8", "Transfer-Encoding": "chunked"}), 90)
    pieces = fixture("gemini_stream_array.json").split(b"\r\n,\r\n")
    assert len(pieces) == 3
    first = pieces[0]
    r.inn(chunk_frame(first[:40]), 100)          # first element still open
    r.inn(chunk_frame(first[40:]), 120)          # ... completes here: first token at 120
    r.inn(chunk_frame(b"\r\n,\r\n" + pieces[1]), 150)
    r.inn(chunk_frame(b"\r\n,\r\n" + pieces[2]), 180)
    end_chunked(r, 181)
    c = r.one()
    assert c.streaming and c.ttft_ms == 120.0 and c.latency_ms == 181.0
    assert c.tools == ["find_book"] and c.stop_reason == "STOP"
    # usageMetadata is cumulative: the last element's counts win
    assert (c.input_tokens, c.output_tokens, c.thoughts_tokens, c.cache_read_input_tokens) == (10, 14, 16, 4)
    assert c.response_model == "gemini-2.5-pro" and not c.incomplete
    assert c.cost_usd == pytest.approx(((10 - 4) * 1.25 + 4 * 0.125 + (14 + 16) * 10) / 1e6)


def test_sse_stream_with_function_call():
    r = Run()
    r.out(request("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", BODY, host=HOST), 0)
    stream_sse(r, fixture("gemini_stream.sse"), 30)
    end_chunked(r, 60)
    c = r.one()
    assert c.ttft_ms == 40.0  # the comment block at 30, first element at 40
    assert c.tools == ["get_weather"] and (c.input_tokens, c.output_tokens, c.thoughts_tokens) == (21, 15, 14)


def test_vertex_ai_path():
    r = Run()
    path = "/v1/projects/my-proj/locations/us-central1/publishers/google/models/gemini-2.0-flash-001:generateContent"
    r.out(request(path, BODY, host="us-central1-aiplatform.googleapis.com"), 0)
    r.inn(response(fixture("gemini_response.json")), 10)
    c = r.one()
    assert (c.provider, c.platform) == ("google", "vertex_ai") and c.model == "gemini-2.0-flash-001"
    assert c.server_address == "us-central1-aiplatform.googleapis.com"
    # priced by the response's modelVersion (gemini-2.5-flash) first
    assert c.cost_usd == pytest.approx((8 * 0.30 + 37 * 2.50) / 1e6)


def test_vertex_express_mode_path():
    # https://cloud.google.com/vertex-ai/generative-ai/docs/start/express-mode: no project in the path
    r = Run()
    r.out(request("/v1beta1/publishers/google/models/gemini-2.5-flash:generateContent", BODY,
                  host="aiplatform.googleapis.com"), 0)
    r.inn(response(fixture("gemini_response.json")), 10)
    assert (r.one().provider, r.one().platform) == ("google", "vertex_ai")


def test_error_resource_exhausted():
    r = Run()
    r.out(request("/v1beta/models/gemini-2.5-flash:generateContent", BODY, host=HOST), 0)
    r.inn(response(fixture("gemini_error_429.json"), status=429), 5)
    c = r.one()
    assert c.stop_reason == "error:RESOURCE_EXHAUSTED" and c.http_status == 429


def test_error_inside_json_array_stream():
    r = Run()
    r.out(request("/v1beta/models/gemini-2.5-flash:streamGenerateContent", BODY, host=HOST), 0)
    r.inn(response(b'[{"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}]'), 5)
    assert r.one().stop_reason == "error:UNAVAILABLE"


def test_other_model_methods_are_not_calls():
    r = Run()
    r.out(request("/v1beta/models/gemini-2.5-flash:countTokens", BODY, host=HOST), 0)
    r.inn(response({"totalTokens": 3}), 5)
    assert r.calls == []


def test_sse_cut_short_reports_usage_of_the_last_chunk_seen():
    # Plain text chunks after the first token are not parsed one by one; the last one's
    # cumulative usage must still be reported when the stream stops early.
    r = Run()
    r.out(request("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", BODY, host=HOST), 0)
    sse = b"".join(
        b'data: {"candidates": [{"content": {"parts": [{"text": "w%d"}],"role": "model"},"index": 0}],'
        b'"usageMetadata": {"promptTokenCount": 5,"candidatesTokenCount": %d},"modelVersion": "gemini-2.5-flash"}\r\n\r\n'
        % (i, i + 1) for i in range(6))
    stream_sse(r, sse, 10)
    r.close(100, "process_exit")
    c = r.one(clean=False)
    assert c.incomplete_reason == "process_exit" and c.ttft_ms == 10.0
    assert (c.input_tokens, c.output_tokens) == (5, 6)
