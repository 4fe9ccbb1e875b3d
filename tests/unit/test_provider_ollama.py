"""Ollama's native API through the whole pipeline: /api/chat, /api/generate (NDJSON streams), /api/embed.

Expected values are read off tests/fixtures/providers/ollama_* (shapes from Ollama's docs/api.md).
"""

from __future__ import annotations

from agtap.capture.chunk import Transport
from tests.support.harness import Run, chunk_frame, end_chunked, fixture, request, response, response_head

HOST = "127.0.0.1:11434"


def plain() -> Run:
    return Run(conn="sock:100:17", transport=Transport.SOCKET)


def ndjson(run: Run, lines: list[bytes], t0: float, step: float = 10.0) -> None:
    run.inn(response_head(200, {"Content-Type": "application/x-ndjson", "Transfer-Encoding": "chunked"}), t0)
    for i, line in enumerate(lines):
        run.inn(chunk_frame(line), t0 + i * step)


def test_chat_stream_with_a_tool_call():
    r = plain()
    # no "stream" in the body: Ollama streams by default
    r.out(request("/api/chat", {"model": "llama3.2", "messages": [{"role": "user", "content": "Paris?"}]},
                  host=HOST), 0)
    lines = fixture("ollama_chat_stream_tool.ndjson").splitlines(keepends=True)
    ndjson(r, lines, 100)
    end_chunked(r, 150)
    c = r.one()
    assert (c.provider, c.platform, c.model, c.response_model, c.operation, c.streaming) == \
        ("ollama", "ollama", "llama3.2", "llama3.2", "chat", True)
    assert (c.input_tokens, c.output_tokens, c.stop_reason) == (122, 23, "stop")
    assert c.tools == ["get_current_weather"]
    assert c.ttft_ms == 110.0            # the first line (at 100) has empty content
    assert c.latency_ms == 150.0 and c.transport == "socket" and c.server_port == 11434
    assert c.cost_usd is None            # a local model has no price


def test_a_stream_is_complete_at_done_true_even_without_the_terminator():
    r = plain()
    r.out(request("/api/chat", {"model": "llama3.2", "messages": []}, host=HOST), 0)
    ndjson(r, fixture("ollama_chat_stream_tool.ndjson").splitlines(keepends=True), 100)
    r.close(200)
    assert not r.one().incomplete


def test_generate_not_streamed():
    r = plain()
    r.out(request("/api/generate", {"model": "llama3.2", "prompt": "Why is the sky blue?", "stream": False},
                  host=HOST), 0)
    r.inn(response(fixture("ollama_generate.json"), content_type="application/json; charset=utf-8"), 5040)
    c = r.one()
    assert (c.operation, c.streaming, c.input_tokens, c.output_tokens, c.stop_reason) == \
        ("text_completion", False, 26, 290, "length")
    assert c.ttft_ms is None and c.tools == []


def test_generate_stream_times_the_first_piece_of_response():
    r = plain()
    r.out(request("/api/generate", {"model": "llama3.2", "prompt": "hi"}, host=HOST), 0)
    lines = [b'{"model":"llama3.2","created_at":"t","response":"","done":false}\n',
             b'{"model":"llama3.2","created_at":"t","response":"Hel","done":false}\n',
             b'{"model":"llama3.2","created_at":"t","response":"lo","done":false}\n',
             b'{"model":"llama3.2","created_at":"t","response":"","done":true,"done_reason":"stop",'
             b'"prompt_eval_count":3,"eval_count":2}\n']
    ndjson(r, lines, 20, step=5)
    end_chunked(r, 50)
    c = r.one()
    assert c.ttft_ms == 25.0 and (c.input_tokens, c.output_tokens, c.stop_reason) == (3, 2, "stop")


def test_embed():
    r = plain()
    r.out(request("/api/embed", {"model": "all-minilm", "input": ["a", "b"]}, host=HOST), 0)
    r.inn(response(fixture("ollama_embed.json")), 15)
    c = r.one()
    assert (c.operation, c.model, c.input_tokens, c.output_tokens, c.streaming) == \
        ("embeddings", "all-minilm", 8, None, False)


def test_errors_an_http_status_and_a_line_inside_a_stream():
    r = plain()
    r.out(request("/api/chat", {"model": "nope", "messages": []}, host=HOST), 0)
    r.inn(response({"error": "model \"nope\" not found, try pulling it first"}, status=404), 3)
    c = r.one()
    assert c.http_status == 404 and c.stop_reason == "error:http_404" and c.is_error()
    r2 = plain()
    r2.out(request("/api/chat", {"model": "llama3.2", "messages": []}, host=HOST), 0)
    ndjson(r2, [b'{"model":"llama3.2","created_at":"t","message":{"role":"assistant","content":"Hi"},"done":false}\n',
                b'{"error":"an error was encountered while running the model: unexpected EOF"}\n'], 10)
    end_chunked(r2, 30)
    c2 = r2.one()
    assert c2.stop_reason == "error:stream_error" and c2.ttft_ms == 10.0 and c2.http_status == 200


def test_a_line_that_is_not_json_is_a_parse_error():
    r = plain()
    r.out(request("/api/chat", {"model": "llama3.2", "messages": []}, host=HOST), 0)
    ndjson(r, [b'{"model":"llama3.2","message":{"content":"Hi"},"done":false}\n', b'{"done":tru\n'], 10)
    end_chunked(r, 30)
    c = r.one(clean=False)
    assert c.incomplete_reason == "parse_error: bad json in stream message" and r.p.stats.parse_errors == 1
