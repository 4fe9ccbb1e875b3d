"""HTTP/2 through the whole pipeline, with bytes written by a real HTTP/2 stack (python3-h2's client and
server connection objects): every stream an exchange, the same providers and fields as HTTP/1.1."""

from __future__ import annotations

import json

import pytest
from h2.settings import SettingCodes
from hyperframe.frame import GoAwayFrame

from agtap.drivers.h2conn import MAX_STREAMS
from agtap.pipeline import Limits
from agtap.wire.http2 import PREFACE
from tests.support.h2wire import IN, OUT, H2Pair
from tests.support.harness import Run, end_chunked, fixture, request, sse_blocks, stream_sse

REQ = {"model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": True,
       "messages": [{"role": "user", "content": "What's the weather like in San Francisco?"}],
       "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}]}
SSE = "text/event-stream"
# what the fixture says (tests/unit/test_provider_anthropic.py checks the same by hand)
TOOL_STREAM = {"provider": "anthropic", "kind": "llm_call", "operation": "chat", "model": "claude-sonnet-4-5",
               "response_model": "claude-sonnet-4-5-20250929", "id": "msg_014p7gG3wDgGV9EUtLvnow3U", "platform": "anthropic",
               "streaming": True, "input_tokens": 472, "output_tokens": 89, "cache_creation_input_tokens": 100,
               "cache_read_input_tokens": 50, "stop_reason": "tool_use", "tools": ["get_weather"],
               "http_status": 200, "server_address": "api.anthropic.com", "server_port": 443, "incomplete": False}


def fields(call, names=TOOL_STREAM) -> dict:
    d = call.to_dict()
    return {k: d[k] for k in names}


def tool_stream_pair(**kw) -> tuple[H2Pair, int]:
    pair = H2Pair(**kw)
    sid = pair.request("/v1/messages", REQ)
    pair.respond(sid, sse_blocks(fixture("anthropic_stream_tool.sse")), content_type=SSE)
    return pair, sid


def test_streamed_call_over_h2_has_the_http1_fields_and_http_version_2():
    pair, _ = tool_stream_pair()
    r = Run()
    pair.feed(r)
    c = r.one()
    assert fields(c) == TOOL_STREAM
    assert c.http_version == "2" and c.to_dict()["http_version"] == "2"
    assert c.bodies.request_target == "POST /v1/messages"
    assert json.loads(c.bodies.request_body) == REQ
    assert c.bodies.response_body.startswith(b": source") and b"message_stop" in c.bodies.response_body
    assert (":authority", "api.anthropic.com") in c.bodies.request_headers
    # the same exchange over HTTP/1.1: the same event, but for the version and the wire sizes
    r1 = Run()
    r1.out(request("/v1/messages", REQ), 0)
    stream_sse(r1, fixture("anthropic_stream_tool.sse"), 100)
    end_chunked(r1, 300)
    c1 = r1.one()
    assert fields(c1) == TOOL_STREAM and c1.http_version == "1.1"


def test_timing_from_the_frames_that_carried_them():
    pair = H2Pair()
    first_req = len(pair.writes)   # after the prefaces, SETTINGS and their ACKs
    pair.request("/v1/messages", REQ)
    assert [d for d, _ in pair.writes[first_req:]] == [OUT]   # HEADERS + DATA in one write
    pair.respond(pair.client.highest_outbound_stream_id, sse_blocks(fixture("anthropic_stream_tool.sse")),
                 content_type=SSE)
    r = Run()
    pair.feed(r, t0=0, step=10)    # write i at 10*i ms
    c = r.one()
    t_request = first_req * 10
    # the first content_block_delta is the first token; the last byte the server wrote ends the call
    first_delta = next(i for i, (d, b) in enumerate(pair.writes) if d == IN and b"content_block_delta" in b)
    last_in = max(i for i, (d, _) in enumerate(pair.writes) if d == IN)
    assert c.ttft_ms == pytest.approx(first_delta * 10 - t_request)
    assert c.latency_ms == pytest.approx(last_in * 10 - t_request)
    # wire sizes: the request's HEADERS+DATA frames (their write holds nothing else), the answer's frames
    assert c.request_bytes == len(pair.writes[first_req][1])
    answer = [b for d, b in pair.writes[first_req + 1:] if d == IN]
    assert len(fixture("anthropic_stream_tool.sse")) < c.response_bytes <= sum(map(len, answer))


def test_json_answer_error_answer_and_tool_call_non_streamed():
    pair = H2Pair()
    req = dict(REQ, stream=False)
    s1 = pair.request("/v1/messages", req)
    pair.respond(s1, fixture("anthropic_message_tool.json"))
    s2 = pair.request("/v1/messages", req)
    pair.respond(s2, fixture("anthropic_error_429.json"), status=429)
    r = Run()
    pair.feed(r)
    assert len(r.calls) == 2 and r.p.stats.parse_errors == 0
    ok, err = r.calls
    assert ok.streaming is False and ok.tools == ["get_weather"] and ok.stop_reason == "tool_use"
    assert (ok.http_status, ok.http_version, ok.incomplete) == (200, "2", False)
    assert err.http_status == 429 and err.error_type == "rate_limit_error" and err.outcome() == "error"


def test_a_frame_split_at_every_byte_in_both_directions():
    pair, _ = tool_stream_pair()
    r = Run()
    pair.feed(r)
    want = fields(r.one())
    egress, ingress = pair.egress_bytes(), pair.ingress_bytes()
    for data, direction in ((egress, OUT), (ingress, IN)):
        other = ingress if direction == OUT else egress
        for k in range(1, len(data)):
            r = Run()
            first = (direction, data[:k]), (direction, data[k:])
            rest = ((IN if direction == OUT else OUT), other)
            # the request goes first whole or split; the answer after it
            seq = [*first, rest] if direction == OUT else [rest, *first]
            for i, (d, b) in enumerate(seq):
                r.chunk(d, b, float(i))
            assert len(r.calls) == 1 and fields(r.calls[0]) == want, (direction, k)
            assert r.p.stats.parse_errors == 0


def test_twenty_concurrent_streams_interleaved_on_one_connection():
    pair = H2Pair()
    sids = []
    for i in range(20):   # all HEADERS+DATA in one write, as a multiplexing client sends them
        sids.append(pair.request("/v1/messages", dict(REQ, model=f"claude-{i}"), send=False))
    pair.flush()
    blocks = sse_blocks(fixture("anthropic_stream_tool.sse"))
    for sid in sids:
        pair.server.send_headers(sid, [(":status", "200"), ("content-type", SSE)])
    for block in blocks:           # every stream's k-th event before any stream's (k+1)-th
        for sid in reversed(sids):
            pair.server.send_data(sid, block)
        pair.flush()
    for sid in sids:
        pair.server.end_stream(sid)
    pair.flush()
    r = Run()
    pair.feed(r)
    assert len(r.calls) == 20 and r.p.stats.parse_errors == 0
    assert sorted(c.model for c in r.calls) == sorted(f"claude-{i}" for i in range(20))
    for c in r.calls:
        assert fields(c, set(TOOL_STREAM) - {"model"}) == {k: v for k, v in TOOL_STREAM.items() if k != "model"}


def test_two_hundred_calls_on_one_connection_churning_the_dynamic_tables():
    # A small table on each side (512 bytes) and a header whose value changes every call: every
    # call inserts entries and evicts older ones, so a wrong index would decode the wrong value.
    pair = H2Pair(client_table_size=512, server_table_size=512)
    for i in range(200):
        sid = pair.request("/v1/messages", dict(REQ, stream=False, model=f"m-{i % 7}"),
                           headers=[("x-request-tag", f"tag-{i}-" + "x" * (i % 50)), ("anthropic-version", "2023-06-01")])
        pair.respond(sid, fixture("anthropic_message_tool.json"), headers=[("request-id", f"req_{i:04d}"),
                                                                         ("x-churn", "y" * (i % 90))])
    r = Run()
    pair.feed(r)
    assert len(r.calls) == 200 and r.p.stats.parse_errors == 0
    for i, c in enumerate(r.calls):
        assert c.model == f"m-{i % 7}"
        assert ("x-request-tag", f"tag-{i}-" + "x" * (i % 50)) in c.bodies.request_headers
        assert ("request-id", f"req_{i:04d}") in c.bodies.response_headers


def test_two_connections_with_different_dynamic_tables_interleaved():
    a, b = H2Pair(), H2Pair()
    for i in range(5):
        for name, pair in (("a", a), ("b", b)):
            sid = pair.request("/v1/messages", dict(REQ, stream=False, model=f"{name}-{i}"),
                               authority=f"{name}.example", headers=[("x-conn", name * (i + 1))])
            pair.respond(sid, fixture("anthropic_message_tool.json"), headers=[("x-answer", f"{name}{i}")])
    r = Run()
    wa, wb = list(a.writes), list(b.writes)
    t = 0.0
    while wa or wb:   # alternate the two connections' writes
        for writes, conn in ((wa, "tls:1:a"), (wb, "tls:1:b")):
            if writes:
                d, data = writes.pop(0)
                r.chunk(d, data, t, conn=conn)
                t += 1
    assert len(r.calls) == 10 and r.p.stats.parse_errors == 0
    for c in r.calls:
        name = c.model[0]
        assert c.server_address == f"{name}.example"
        i = int(c.model.split("-")[1])
        assert ("x-conn", name * (i + 1)) in c.bodies.request_headers
        assert ("x-answer", f"{name}{i}") in c.bodies.response_headers


def test_reset_stream_makes_the_call_incomplete_with_the_reason():
    pair = H2Pair()
    sid = pair.request("/v1/messages", REQ)
    pair.server.send_headers(sid, [(":status", "200"), ("content-type", SSE)])
    pair.flush()
    for block in sse_blocks(fixture("anthropic_stream_tool.sse"))[:5]:
        pair.server.send_data(sid, block)
        pair.flush()
    pair.reset(sid, 8, by_client=True)      # CANCEL: the user pressed ^C
    sid2 = pair.request("/v1/messages", REQ)
    pair.reset(sid2, 2, by_client=False)    # INTERNAL_ERROR from the server, before any answer
    r = Run()
    pair.feed(r)
    assert len(r.calls) == 2
    c1, c2 = r.calls
    assert c1.incomplete and c1.incomplete_reason == "stream_reset: CANCEL by client"
    assert c1.input_tokens == 472 and c1.outcome() == "incomplete"
    assert c2.incomplete and c2.incomplete_reason == "stream_reset: INTERNAL_ERROR by server"
    assert r.p.stats.parse_errors == 0


def test_goaway_ends_the_streams_the_server_never_processed():
    pair = H2Pair()
    s1 = pair.request("/v1/messages", dict(REQ, stream=False))
    s3 = pair.request("/v1/messages", dict(REQ, stream=False))
    # a graceful shutdown: GOAWAY first, then the answers to what the server took (h2's own
    # close_connection() would stop the server from answering)
    pair.writes.append((IN, GoAwayFrame(0, last_stream_id=s1, error_code=0).serialize()))
    pair.respond(s1, fixture("anthropic_message_tool.json"))
    r = Run()
    pair.feed(r)
    by_sid = {c.incomplete: c for c in r.calls}
    assert len(r.calls) == 2 and s3 == s1 + 2
    assert by_sid[True].incomplete_reason == "goaway: NO_ERROR (stream not processed)"
    assert by_sid[False].tools == ["get_weather"]


def test_trailers_padding_and_a_closed_connection():
    pair = H2Pair()
    sid = pair.request("/v1/messages", dict(REQ, stream=False))
    body = fixture("anthropic_message_tool.json")
    pair.server.send_headers(sid, [(":status", "200"), ("content-type", "application/json")])
    pair.server.send_data(sid, body[:100], pad_length=17)
    pair.server.send_data(sid, body[100:], pad_length=0)
    pair.server.send_headers(sid, [("grpc-status", "0")], end_stream=True)   # trailers end it
    pair.flush()
    sid2 = pair.request("/v1/messages", REQ)   # never answered
    r = Run()
    t = pair.feed(r)
    r.close(t)
    assert len(r.calls) == 2
    done, open_ = r.calls
    assert done.tools == ["get_weather"] and not done.incomplete and done.response_bytes > len(body) + 17
    assert open_.incomplete_reason == "connection_closed" and sid2 == sid + 2


def test_streams_no_provider_wants_keep_no_state_and_do_not_stop_the_connection():
    pair = H2Pair()
    for i in range(50):
        sid = pair.request(f"/assets/{i}.js", b"", method="GET")
        pair.respond(sid, b"x" * 40000, content_type="text/javascript")
    sid = pair.request("/v1/messages", REQ)
    pair.respond(sid, sse_blocks(fixture("anthropic_stream_tool.sse")), content_type=SSE)
    r = Run()
    told = []
    r.p.ignore_stream = lambda conn, sid: told.append((str(conn), sid))
    pair.feed(r)
    assert fields(r.one()) == TOOL_STREAM
    assert r.p.stats.ignored_exchanges == 50 and r.ignored == []   # never ignore_conn: other streams go on
    conn = next(iter(r.p.conns.values()))
    assert conn.streams == {}
    # each of them, and only them, handed to the kernel to stop copying its DATA (bpf/h2.h)
    assert sorted(set(told)) == [(r.conn, s) for s in range(1, 100, 2)]


def test_many_unfinished_streams_are_bounded():
    pair = H2Pair()
    pair.server.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: 10_000})   # h2's default is 100
    pair.flush()
    for i in range(MAX_STREAMS + 10):
        pair.request("/v1/messages", REQ)
    r = Run()
    pair.feed(r)
    conn = next(iter(r.p.conns.values()))
    assert len(conn.streams) == MAX_STREAMS
    assert len(r.calls) == 10 and all(c.incomplete_reason == "evicted: too many http2 streams" for c in r.calls)


def test_late_join_drops_what_it_cannot_decode_and_counts_it():
    pair = H2Pair()
    hdrs = [("x-session", "s" * 40)]
    s1 = pair.request("/v1/messages", dict(REQ, stream=False), headers=hdrs)
    pair.respond(s1, fixture("anthropic_message_tool.json"))
    joined = len(pair.writes)
    for extra in ([], [("x-new", "fresh-value")], []):
        sid = pair.request("/v1/messages", dict(REQ, stream=False), headers=hdrs + extra)
        pair.respond(sid, fixture("anthropic_message_tool.json"))
    r = Run()
    pair.feed(r, start=joined)   # capture began after the preface and the first call
    # Every later block names entries the first call put in the tables (content-type, :authority,
    # x-session, the server's content-type): three requests and three answers, none guessed.
    assert r.calls == [] and r.p.stats.h2_headers_unknown == 6 and r.p.stats.parse_errors == 0


def test_late_join_without_dynamic_tables_decodes_everything():
    # Both sides turn HPACK's dynamic table off (SETTINGS_HEADER_TABLE_SIZE 0): nothing can be missing.
    pair = H2Pair(client_table_size=0, server_table_size=0)
    s1 = pair.request("/v1/messages", dict(REQ, stream=False, model="first"))
    joined = len(pair.writes)    # the first request went out before capture; its answer comes after
    s3 = pair.request("/v1/messages", dict(REQ, stream=False, model="second"), headers=[("x-tag", "t3")])
    pair.respond(s1, fixture("anthropic_message_tool.json"))
    pair.respond(s3, fixture("anthropic_message_tool.json"))
    r = Run()
    pair.feed(r, start=joined)
    c = r.one()
    assert (c.model, c.tools, c.http_version) == ("second", ["get_weather"], "2")
    assert ("x-tag", "t3") in c.bodies.request_headers
    assert r.p.stats.unmatched_responses == 1 and r.p.stats.h2_headers_unknown == 0


def test_late_join_never_decodes_a_wrong_header():
    # Small tables that evict all the time: wherever capture starts, a call is either decoded right
    # or ends "hpack_state_unknown" (here the server's answer names an entry from before capture).
    pair = H2Pair(client_table_size=256, server_table_size=256)
    sent = []
    for i in range(30):
        tag = f"t{i}-" + "z" * (i % 13)
        sent.append(tag)
        sid = pair.request("/v1/messages", dict(REQ, stream=False, model=f"m{i}"), headers=[("x-tag", tag)])
        pair.respond(sid, fixture("anthropic_message_tool.json"))
    starts = [i for i, (d, b) in enumerate(pair.writes) if d == OUT and i > 2]
    decoded = 0
    for start in starts:
        r = Run()
        pair.feed(r, start=start)
        for c in r.calls:
            i = int(c.model[1:])
            assert dict(c.bodies.request_headers)["x-tag"] == sent[i]
            assert c.incomplete_reason in (None, "hpack_state_unknown")
            assert c.tools == ["get_weather"] or c.incomplete_reason == "hpack_state_unknown"
            decoded += 1
        assert r.p.stats.parse_errors == 0
        assert r.p.stats.h2_headers_unknown == sum(c.incomplete_reason == "hpack_state_unknown" for c in r.calls)
    assert decoded > 100


def test_late_join_stays_in_step_through_blocks_it_cannot_decode():
    # Like the fake API (and real APIs' request ids): every answer carries a header with a new value,
    # indexed, whose name the encoder takes from the newest entry of that name: each answer names an
    # entry the previous one inserted, back to one from before capture. None of those is guessed (the
    # name is unknown for good), but what each inserts is kept in step, so once the server empties its
    # table (a size update to 0) its answers decode again, and stay decoded. (A decoder that restarts
    # empty at each failure would lose the entry the next answer names.)
    import os
    pair = H2Pair()
    churn = lambda: [("x-churn", os.urandom(75).hex())]  # noqa: E731
    s1 = pair.request("/v1/messages", dict(REQ, stream=False, model="before"))
    pair.respond(s1, fixture("anthropic_message_tool.json"), headers=churn())
    joined = len(pair.writes)
    # the client empties its table (size 0, then 4096 again: two updates in one block): its blocks
    # are exact from there on
    pair.client.encoder.header_table_size = 0
    pair.client.encoder.header_table_size = 4096
    for i in range(30):
        sid = pair.request("/v1/messages", dict(REQ, stream=False, model=f"m{i}"), headers=[("x-tag", f"t{i}")])
        if i == 10:
            pair.server.encoder.header_table_size = 0
            pair.server.encoder.header_table_size = 4096
        pair.respond(sid, fixture("anthropic_message_tool.json"), headers=churn())
    r = Run()
    pair.feed(r, start=joined)
    assert [c.model for c in r.calls] == [f"m{i}" for i in range(30)]   # every request decoded, in order
    assert all(dict(c.bodies.request_headers)["x-tag"] == f"t{i}" for i, c in enumerate(r.calls))
    assert [c.incomplete_reason for c in r.calls] == ["hpack_state_unknown"] * 10 + [None] * 20
    assert all(c.tools == ["get_weather"] and c.http_status == 200 for c in r.calls[10:])
    assert all(c.http_status in (0, None) and c.tools == [] for c in r.calls[:10]), r.calls[0].to_dict()
    assert r.p.stats.h2_headers_unknown == 10 and r.p.stats.parse_errors == 0


def test_late_join_a_table_size_update_to_zero_makes_the_decoder_exact():
    pair = H2Pair(client_table_size=0)   # the server's table off: only the client's HPACK is in question
    s1 = pair.request("/v1/messages", dict(REQ, stream=False, model="before"), headers=[("x-session", "s1")])
    pair.respond(s1, fixture("anthropic_message_tool.json"))
    joined = len(pair.writes)
    sid = pair.request("/v1/messages", dict(REQ, stream=False, model="old-entries"), headers=[("x-session", "s1")])
    pair.respond(sid, fixture("anthropic_message_tool.json"))
    pair.client.encoder.header_table_size = 0
    pair.client.encoder.header_table_size = 4096
    for model in ("after-reset", "again"):
        sid = pair.request("/v1/messages", dict(REQ, stream=False, model=model), headers=[("x-session", "s1")])
        pair.respond(sid, fixture("anthropic_message_tool.json"))
    r = Run()
    pair.feed(r, start=joined)
    assert [(c.model, c.incomplete_reason, c.tools) for c in r.calls] == [
        ("after-reset", None, ["get_weather"]), ("again", None, ["get_weather"])]
    assert r.p.stats.h2_headers_unknown == 1 and r.p.stats.parse_errors == 0


def test_late_join_inside_a_server_frame_decodes_nothing_of_that_direction():
    # A read in flight when capture began: the server's first captured bytes start inside a frame.
    pair = H2Pair(client_table_size=0)
    pair.request("/v1/messages", dict(REQ, stream=False, model="before"))
    joined = len(pair.writes)
    pair.client.encoder.header_table_size = 0
    pair.client.encoder.header_table_size = 4096
    sid = pair.request("/v1/messages", dict(REQ, stream=False, model="after"))
    pair.respond(sid, fixture("anthropic_message_tool.json"))
    out, head, body = pair.writes[joined:]
    assert (out[0], head[0], body[0]) == (OUT, IN, IN)
    r = Run()
    r.chunk(OUT, out[1], 0)
    # the read in flight when capture began took the answer's HEADERS and DATA's frame header
    r.chunk(IN, body[1][9:13], 10)     # under a header's 9 bytes: judged with the next chunk
    r.chunk(IN, body[1][13:], 11)      # JSON, not a frame header
    r.close(2000)
    c = r.one(clean=False)
    assert (c.model, c.incomplete_reason) == ("after", "parse_error: http2: joined late inside a frame")
    assert r.p.stats.parse_errors == 1


def test_h2c_upgrade_from_http1():
    r = Run(conn="sock:9:1")
    body = json.dumps(dict(REQ, stream=False)).encode()
    pair = H2Pair(upgrade=True)
    settings = pair.client.initiate_upgrade_connection()
    r.out(request("/v1/messages", body, host="localhost:8080",
                  headers={"Connection": "Upgrade, HTTP2-Settings", "Upgrade": "h2c",
                           "HTTP2-Settings": settings.decode()}), 0)
    pair.server.initiate_upgrade_connection(settings)
    pair.server.send_headers(1, [(":status", "200"), ("content-type", "application/json")])
    pair.server.send_data(1, fixture("anthropic_message_tool.json"), end_stream=True)
    h2_answer = pair.server.data_to_send()
    # the 101 and the server's first frames in one read
    r.inn(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n" + h2_answer, 5)
    pair.client.receive_data(h2_answer)
    hello = pair.client.data_to_send()     # the preface, SETTINGS, ACK
    r.out(hello, 6)
    pair.server.receive_data(hello)
    c = r.one()
    assert c.tools == ["get_weather"] and c.http_version == "2" and c.server_port == 8080
    # ...and the next call on the connection is a plain HTTP/2 stream
    sid = pair.client.get_next_available_stream_id()
    pair.client.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":authority", "localhost:8080"),
                                   (":path", "/v1/messages")])
    pair.client.send_data(sid, body, end_stream=True)
    ask = pair.client.data_to_send()
    r.out(ask, 10)
    pair.server.receive_data(ask)
    pair.server.send_headers(sid, [(":status", "200"), ("content-type", "application/json")])
    pair.server.send_data(sid, fixture("anthropic_message_tool.json"), end_stream=True)
    r.inn(pair.server.data_to_send(), 12)
    assert len(r.calls) == 2 and r.calls[1].http_version == "2" and r.p.stats.parse_errors == 0


def test_prior_knowledge_h2c_on_a_plain_socket():
    pair, _ = tool_stream_pair()
    r = Run(conn="sock:3:4")
    from agtap.capture.chunk import Transport
    r.transport = Transport.SOCKET
    pair.feed(r)
    c = r.one()
    assert c.transport == "socket" and c.http_version == "2" and c.server_port == 80
    assert pair.writes[0][1].startswith(PREFACE)


def test_an_answer_whose_headers_are_too_large_ends_the_call_with_the_reason():
    pair = H2Pair()
    sid = pair.request("/v1/messages", dict(REQ, stream=False))
    pair.respond(sid, fixture("anthropic_message_tool.json"), headers=[(f"x-junk-{i}", "j" * 4000) for i in range(10)])
    sid2 = pair.request("/v1/messages", dict(REQ, stream=False))
    pair.respond(sid2, fixture("anthropic_message_tool.json"))
    r = Run(limits=Limits(max_head=8192))   # a header block is kept up to max_head bytes
    pair.feed(r)
    assert len(r.calls) == 2
    big, after = r.calls
    assert big.incomplete_reason == "parse_error: http2 header block too large" and big.http_status is None
    # the server's HPACK state went with the lost block: the next answer is decoded only if it names
    # nothing from before it. Here it does not (each 4000-byte header filled the 4096-byte table,
    # evicting the rest, so the encoder sends content-type again as a literal): decoded, and right
    assert after.incomplete_reason is None and after.tools == ["get_weather"] and after.http_status == 200
    assert r.p.stats.parse_errors == 1


def test_h2c_upgrade_of_a_request_no_provider_wants():
    r = Run(conn="sock:9:2")
    pair = H2Pair(upgrade=True)
    settings = pair.client.initiate_upgrade_connection()
    r.out(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
          b"HTTP2-Settings: " + settings + b"\r\n\r\n", 0)
    pair.server.initiate_upgrade_connection(settings)
    pair.server.send_headers(1, [(":status", "200"), ("content-type", "text/html")])
    pair.server.send_data(1, b"<html>", end_stream=True)
    first = pair.server.data_to_send()
    r.inn(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n" + first, 1)
    pair.client.receive_data(first)
    pair.writes = []
    pair._flush_client()
    sid = pair.request("/v1/messages", REQ)
    pair.respond(sid, sse_blocks(fixture("anthropic_stream_tool.sse")), content_type=SSE)
    pair.feed(r, t0=2)
    assert fields(r.one()) == TOOL_STREAM and r.ignored == []


def test_mcp_over_http2():
    pair = H2Pair()
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 1}}}
    sid = pair.request("/mcp", call, authority="localhost:8000")
    pair.respond(sid, json.dumps({"jsonrpc": "2.0", "id": 7, "result": {"content": []}}).encode())
    r = Run()
    pair.feed(r)
    c = r.one()
    assert (c.kind, c.model, c.tools, c.jsonrpc_id, c.server_port) == ("mcp_call", "tools/call", ["add"], "7", 8000)
    assert c.http_version == "2"


def test_server_push_keeps_hpack_in_step_and_pushed_streams_are_not_calls():
    pair = H2Pair()
    sid = pair.request("/v1/messages", dict(REQ, stream=False))
    pushed = [(":method", "GET"), (":scheme", "https"), (":authority", "api.anthropic.com"), (":path", "/x.css"),
              ("x-pushed", "p" * 30)]
    pair.server.push_stream(sid, 2, pushed)
    pair.server.send_headers(2, [(":status", "200"), ("x-pushed", "p" * 30)])
    pair.server.send_data(2, b"body{}", end_stream=True)
    pair.flush()
    # the answer names the entries the PUSH_PROMISE and the pushed response inserted
    pair.respond(sid, fixture("anthropic_message_tool.json"), headers=[("x-pushed", "p" * 30)])
    r = Run()
    pair.feed(r)
    c = r.one()
    assert c.tools == ["get_weather"] and ("x-pushed", "p" * 30) in c.bodies.response_headers
    assert r.p.stats.unmatched_responses == 0


def test_a_client_that_resets_after_the_last_event_had_the_whole_answer():
    # An SDK that stops reading at `data: [DONE]` cancels the stream before END_STREAM arrives.
    pair = H2Pair()
    sid = pair.request("/v1/chat/completions", {"model": "gpt-4.1", "stream": True, "messages": []},
                       authority="api.openai.com")
    pair.respond(sid, sse_blocks(fixture("openai_chat_stream_text.sse")), content_type=SSE, end=False)
    pair.reset(sid, 8, by_client=True)
    sid2 = pair.request("/v1/chat/completions", {"model": "gpt-4.1", "stream": True, "messages": []},
                        authority="api.openai.com")
    pair.respond(sid2, sse_blocks(fixture("openai_chat_stream_text.sse"))[:3], content_type=SSE, end=False)
    pair.reset(sid2, 8, by_client=True)   # ...and one that gave up half-way
    r = Run()
    pair.feed(r)
    done, cut = r.calls
    assert not done.incomplete and done.stop_reason == "stop" and (done.input_tokens, done.output_tokens) == (1000, 200)
    assert cut.incomplete_reason == "stream_reset: CANCEL by client"
