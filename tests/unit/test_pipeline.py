"""Pipeline behaviour around the providers: ignoring, incomplete calls, bounds, stats."""

from __future__ import annotations


from agtap.pipeline import Limits, Pipeline
from agtap.providers import anthropic
from tests.support.harness import (Run, chunk, chunk_frame, end_chunked, fixture, ms, request, response,
                                              response_head, sse_blocks, stream_sse)

MSG = {"model": "claude-sonnet-4-5", "stream": True, "messages": []}


def llm_exchange(r: Run, t: float, n: int = 1):
    r.out(request("/v1/messages", dict(MSG, stream=False)), t)
    r.inn(response({"type": "message", "id": f"msg_{n}", "content": [], "stop_reason": "end_turn",
                    "usage": {"input_tokens": n, "output_tokens": n}}), t + 1)


def test_unknown_path_calls_ignore_conn_and_emits_nothing():
    r = Run()
    r.out(b"GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n", 0)
    assert r.ignored == [r.conn]
    # the capture layer may still deliver some of the answer (already in flight): skipped, no event
    r.inn(response_head(200, {"Content-Length": str(1 << 20)}) + b"<html>" * 1000, 1)
    r.inn(b"HTTP/1.1 200 OK looks like a status line inside the body\r\n" * 3, 2)
    assert r.calls == []
    llm_exchange(r, 10)               # the same keep-alive conn carries on with an LLM call
    c = r.one()
    assert c.id == "msg_1" and c.latency_ms == 1.0
    assert r.p.stats.ignored_exchanges == 1


def test_unknown_download_when_kernel_keeps_copying():
    r = Run()
    r.out(b"GET /big.bin HTTP/1.1\r\nHost: example.com\r\n\r\n", 0)
    blob = b"\x00\x01binary" * (1 << 17)   # ~1 MiB, all delivered anyway
    r.inn(response_head(200, {"Content-Length": str(len(blob)), "Content-Type": "application/octet-stream"}), 1)
    for off in range(0, len(blob), 65536):
        r.inn(blob[off:off + 65536], 2)
    llm_exchange(r, 10, n=2)
    assert [c.id for c in r.calls] == ["msg_2"]


def test_unknown_post_decided_from_body():
    r = Run()
    r.out(request("/upload", b"\x89PNG....", headers={"Content-Type": None}), 0)
    assert r.ignored == [r.conn]
    r.inn(response({"ok": 1}), 1)
    assert r.calls == []


def test_process_exit_mid_sse_gives_one_incomplete_call_with_tokens_so_far():
    r = Run()
    r.out(request("/v1/messages", MSG), 0)
    blocks = sse_blocks(fixture("anthropic_stream_tool.sse"))
    r.inn(response_head(200, {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"}), 5)
    for i, b in enumerate(blocks[:8]):      # up to the tool_use block start; no message_delta yet
        r.inn(chunk_frame(b), 10 + i)
    r.inn(chunk_frame(blocks[8])[:30], 30)  # half an event
    r.close(40, "process_exit")
    c = r.one(clean=False)
    assert c.incomplete and c.incomplete_reason == "process_exit"
    assert (c.input_tokens, c.output_tokens) == (472, 2)   # message_start's counts, all we saw
    assert c.tools == ["get_weather"] and c.stop_reason is None
    assert c.latency_ms == 30.0 and c.ttft_ms == 14.0   # blocks: comment 10, start 11, block 12, ping 13, delta 14
    assert r.p.stats.conns_open == 0


def test_connection_closed_before_any_answer():
    r = Run()
    r.out(request("/v1/messages", MSG), 0)
    r.close(5)
    c = r.one(clean=False)
    assert c.incomplete_reason == "connection_closed" and c.latency_ms is None and c.http_status is None


def test_cut_request_still_emits_call():
    r = Run()
    req = request("/v1/messages", dict(MSG, stream=False, messages=[{"role": "user", "content": "y" * 5000}]))
    r.out(req[:3000], 0, cut=True)         # the capture copied only part of this write
    r.inn(response({"type": "message", "content": [], "stop_reason": "end_turn",
                    "usage": {"input_tokens": 9, "output_tokens": 1}}), 4)
    c = r.one(clean=False)
    assert c.incomplete and c.incomplete_reason == "cut" and c.input_tokens == 9
    llm_exchange(r, 10, n=3)               # next request resynchronises
    assert r.calls[-1].id == "msg_3" and not r.calls[-1].incomplete


def test_cut_response_chunk():
    r = Run()
    r.out(request("/v1/messages", MSG), 0)
    r.inn(response_head(200, {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"}), 1)
    r.inn(chunk_frame(b"".join(sse_blocks(fixture("anthropic_stream_tool.sse"))[:5])), 2, cut=True)
    c = r.one(clean=False)
    assert c.incomplete_reason == "cut" and c.input_tokens == 472 and c.ttft_ms == 2.0


def test_malformed_response_gives_partial_call_and_resyncs():
    r = Run()
    r.out(request("/v1/messages", MSG), 0)
    r.inn(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\nZZZ\r\n", 2)
    c = r.one(clean=False)
    assert c.incomplete and c.incomplete_reason == "parse_error: bad_chunk_size"
    assert r.p.stats.parse_errors == 1
    llm_exchange(r, 10, n=4)
    assert r.calls[-1].id == "msg_4"


def test_bad_json_body_is_a_parse_error():
    r = Run()
    r.out(request("/v1/messages", MSG), 0)
    r.inn(response(b'{"type": "message", "usage": {', content_type="application/json"), 2)
    assert r.one(clean=False).incomplete_reason == "parse_error: bad json body"


def test_provider_bug_is_counted_not_raised(monkeypatch):
    def boom(*a):
        raise RuntimeError("provider bug")
    monkeypatch.setattr(anthropic, "feed", boom)
    r = Run()
    r.out(request("/v1/messages", MSG), 0)
    stream_sse(r, fixture("anthropic_stream_tool.sse"), 1)
    c = r.one(clean=False)
    assert c.incomplete_reason == "parse_error: internal RuntimeError"
    assert r.p.stats.internal_errors == 1 and r.p.stats.conns_open == 0


def test_emit_errors_are_counted():
    tried = []

    def bad_emit(call):
        tried.append(call)
        raise ValueError("sink broke")
    p = Pipeline(bad_emit)
    r = Run()
    r.p = p
    llm_exchange(r, 0)
    assert p.stats.emit_errors == 1 and len(tried) == 1


def test_expire_idle_and_flush():
    r = Run()
    r.out(request("/v1/messages", MSG), 0)
    r.out(request("/v1/messages", MSG), 0, conn="tls:1:0ee")
    r.p.expire(ms(1000))                     # not idle yet
    assert r.calls == []
    r.out(request("/v1/messages", MSG), 500_000, conn="tls:1:0ee")   # 0ee stays busy
    r.p.expire(ms(601_000))                  # first conn idle > 10 min
    assert [c.incomplete_reason for c in r.calls] == ["idle_timeout"]
    assert r.p.stats.conns_expired == 1 and r.p.stats.conns_open == 1
    r.p.flush()
    assert [c.incomplete_reason for c in r.calls] == ["idle_timeout", "shutdown", "shutdown"]


def test_conn_cap_evicts_least_recent():
    r = Run(limits=Limits(max_conns=3))
    for k in range(4):
        r.out(request("/v1/messages", MSG), k, conn=f"tls:1:{k}")
    assert r.p.stats.conns_evicted == 1 and r.p.stats.conns_open == 3
    assert r.one(clean=False).incomplete_reason == "evicted"


def test_body_cap_truncates_bodies_but_stream_still_parsed():
    r = Run(limits=Limits(max_body=500))
    r.out(request("/v1/messages", MSG), 0)
    stream_sse(r, fixture("anthropic_stream_tool.sse"), 10)
    end_chunked(r, 200)
    c = r.one()
    assert len(c.bodies.response_body) == 500 and (c.input_tokens, c.output_tokens) == (472, 89)
    assert not c.incomplete and r.p.stats.bodies_truncated == 1


def test_http2_and_tls_handshake_bytes_are_harmless():
    r = Run()
    r.out(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04", 0)
    r.out(b"\x16\x03\x01\x02\x00\x01", 1, conn="sock:2:3")
    r.inn(b"\x00\x00\x00", 2)
    assert r.calls == [] and r.p.stats.parse_errors == 0


def test_non_http_first_bytes_are_ignored_until_a_request_line():
    r = Run()
    r.out(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 0)   # not HTTP: the kernel is told to stop copying
    assert r.ignored == [r.conn]
    r.inn(b"\x16\x03\x03\x00\x5a", 1)
    llm_exchange(r, 5, n=6)                                    # ... and a request line brings it back
    assert r.one().id == "msg_6"


def test_websocket_upgrade_stops_parsing():
    r = Run()
    r.out(b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", 0)
    r.inn(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello", 1)
    r.out(b"\x81\x85POST /v1/messages HTTP/1.1\r\n", 2)
    assert r.calls == [] and r.p.stats.parse_errors == 0


def test_head_request_response_has_no_body_and_unanswered_requests_are_bounded():
    from agtap.drivers.httpconn import MAX_PENDING
    r = Run()
    r.out(b"HEAD /v1/messages HTTP/1.1\r\nHost: h\r\n\r\n", 0)
    r.inn(response_head(200, {"Content-Length": "1234"}), 1)     # no body follows a HEAD answer
    llm_exchange(r, 2, n=7)
    assert [c.id for c in r.calls] == ["msg_7"]
    for k in range(MAX_PENDING + 1):
        r.out(request("/v1/messages", MSG), 10 + k)
    assert [c.incomplete_reason for c in r.calls[1:]] == ["unanswered"]


def test_request_body_past_cap_is_truncated_but_call_still_complete():
    r = Run(limits=Limits(max_body=1000))
    # messages before model, as the SDKs order keys: the model is past the cap
    big = {"max_tokens": 5, "messages": [{"role": "user", "content": "z" * 5000}], "model": "claude-sonnet-4-5",
           "stream": True}
    r.out(request("/v1/messages", big), 0)
    stream_sse(r, fixture("anthropic_stream_tool.sse"), 10)
    end_chunked(r, 200)
    c = r.one()
    assert len(c.bodies.request_body) == 1000 and len(c.bodies.response_body) == 1000
    assert r.p.stats.bodies_truncated == 2   # the request and the (longer) SSE response
    assert c.model is None and c.response_model == "claude-sonnet-4-5-20250929"
    assert c.streaming is True and c.cost_usd is not None   # from the response side


def test_unanswered_call_ends_at_close():
    r = Run()
    r.out(request("/v1/messages", MSG), 0)
    r.close(70)
    c = r.one(clean=False)
    assert c.end_ns == ms(70) and c.start_ns == ms(0) and c.latency_ms is None


def test_a_stream_that_reached_its_end_event_is_complete_even_if_the_client_closes_early():
    """OpenAI's SDK stops reading at `data: [DONE]` and drops the connection before the
    chunked terminator (0\\r\\n\\r\\n) arrives: the call is complete, not cut."""
    from agtap.capture.chunk import ConnClosed, Direction
    from agtap.capture.connid import ConnId
    from agtap.pipeline import Pipeline

    calls = []
    p = Pipeline(calls.append)
    body = b'{"model":"gpt-x","stream":true,"messages":[]}'
    req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: api.example\r\nContent-Type: application/json\r\n"
           b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    events = (b'data: {"id":"c1","model":"gpt-x","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n'
              b'data: {"id":"c1","model":"gpt-x","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
              b'data: [DONE]\n\n')
    resp = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            + hex(len(events))[2:].encode() + b"\r\n" + events + b"\r\n")     # no 0\r\n\r\n
    p.feed(chunk(Direction.EGRESS, req, 1_000_000))
    p.feed(chunk(Direction.INGRESS, resp, 5_000_000))
    p.feed(ConnClosed(ConnId.tls(1, 0xA), 6_000_000, "closed"))
    assert len(calls) == 1
    assert calls[0].stop_reason == "stop" and not calls[0].incomplete
    # without the end event, the same early close is an incomplete call
    calls.clear()
    p2 = Pipeline(calls.append)
    p2.feed(chunk(Direction.EGRESS, req, 1_000_000))
    cut = resp.replace(b"data: [DONE]\n\n", b"")
    cut = cut.replace(hex(len(events))[2:].encode() + b"\r\n", hex(len(events) - 14)[2:].encode() + b"\r\n", 1)
    p2.feed(chunk(Direction.INGRESS, cut, 5_000_000))
    p2.feed(ConnClosed(ConnId.tls(1, 0xA), 6_000_000, "closed"))
    assert len(calls) == 1 and calls[0].incomplete and calls[0].incomplete_reason == "connection_closed"


def test_every_llm_provider_module_has_the_protocols_entry_points():
    from agtap.drivers.exchange import LLM_PROVIDERS
    from agtap.providers import mcp
    from agtap.providers.base import LlmProvider
    assert [m.__name__.rsplit(".", 1)[1] for m in LLM_PROVIDERS if isinstance(m, LlmProvider)] == \
        ["anthropic", "openai_chat", "openai_responses", "gemini", "ollama", "openai_embeddings",
         "gemini_embeddings", "bedrock_converse", "bedrock_invoke"]
    assert not isinstance(mcp, LlmProvider)   # the check tells a module without them apart
    assert [m.NAME for m in LLM_PROVIDERS if m.STREAM_JSON_ARRAY] == ["google"]
