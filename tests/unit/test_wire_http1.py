"""HTTP/1.1 framing (RFC 9112): the parser alone, then exchanges through the pipeline."""

from __future__ import annotations

import json

from agtap.wire.http1 import HttpParser, looks_like_request_start
from tests.support.harness import Run, chunk_frame, request, response, response_head


class Rec:
    """Collects what a parser reports, as (kind, ...) tuples."""

    def __init__(self, is_request: bool):
        self.events: list = []
        self.bodies: dict = {}
        self.p = HttpParser(is_request, self.head, self.body, self.end, self.error)

    def head(self, h):
        self.events.append(("head", h.method or h.status, h.target))
        self.bodies[id(h)] = b""

    def body(self, h, data, ts):
        self.bodies[id(h)] += data

    def end(self, h, ts):
        self.events.append(("end", self.bodies[id(h)], h.wire_bytes, ts))

    def error(self, reason, ts):
        self.events.append(("error", reason))


CHUNKED_RESP = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
                b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n")


def test_chunked_split_at_every_byte_boundary():
    # Exhaustive: every single split point, and every pair of split points.
    msg = CHUNKED_RESP
    want = [("head", 200, ""), ("end", b"hello, world", len(msg), 0)]
    for i in range(len(msg) + 1):
        for j in range(i, len(msg) + 1):
            rec = Rec(False)
            rec.p.feed(msg[:i], 0)
            rec.p.feed(msg[i:j], 0)
            rec.p.feed(msg[j:], 0)
            assert rec.events == want, (i, j)


def test_request_line_start_detection():
    assert looks_like_request_start(b"POST /v1/messages") is True
    assert looks_like_request_start(b"PO") is None
    assert looks_like_request_start(b"\x16\x03\x01") is False
    assert looks_like_request_start(b"FOO /x") is False


def test_interim_100_continue_is_skipped_and_no_body_statuses():
    rec = Rec(False)
    rec.p.feed(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
               b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 1)
    # the interim head is reported (the owner skips it) but never ends a message
    assert [e[:2] for e in rec.events] == [("head", 100), ("head", 204), ("end", b""), ("head", 304), ("end", b""),
                                          ("head", 200), ("end", b"ok")]


def test_until_close_body_and_resync_after_garbage():
    rec = Rec(False)
    rec.p.feed(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart1 ", 1)
    rec.p.feed(b"part2", 2)
    assert rec.p.close(3) is False
    assert rec.events[-1][:2] == ("end", b"part1 part2")
    req = Rec(True)
    req.p.feed(b"POST /x HTTP/1.1\r\nContent-Length: zz\r\n\r\ngarbage GET /y HTTP/1.1 no\r\n"
               b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n", 5)
    # the head parses; its framing is what is broken
    assert req.events == [("head", "POST", "/x"), ("error", "bad_content_length"), ("head", "GET", "/ok"),
                          ("end", b"", 29, 5)]


def test_header_too_large():
    rec = Rec(True)
    rec.p.feed(b"POST /v1/messages HTTP/1.1\r\nX: " + b"a" * 70000, 1)
    assert rec.events == [("error", "header_too_large")]


def test_keep_alive_three_exchanges_one_conn():
    r = Run()
    for k in range(3):
        t = k * 100
        r.out(request("/v1/messages", {"model": f"claude-haiku-4-5", "messages": [], "n": k}), t)
        body = {"id": f"msg_{k}", "type": "message", "model": "claude-haiku-4-5", "content": [],
                "stop_reason": "end_turn", "usage": {"input_tokens": 10 + k, "output_tokens": 1}}
        r.inn(response(body), t + 10 + k)
    assert [(c.id, c.input_tokens, c.latency_ms) for c in r.calls] == [
        ("msg_0", 10, 10.0), ("msg_1", 11, 11.0), ("msg_2", 12, 12.0)]
    assert r.p.stats.conns_open == 1


def test_pipelined_requests_pair_in_order_and_head_has_no_body():
    r = Run()
    a = request("/v1/chat/completions", {"model": "gpt-4o", "messages": []}, host="api.openai.com")
    b = request("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": []}, host="api.openai.com")
    r.out(a + b, 0)
    ra = response({"id": "A", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}})
    rb = response({"id": "B", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}})
    r.inn(ra + rb[:20], 5)
    r.inn(rb[20:], 7)
    assert [(c.model, c.id, c.output_tokens, c.latency_ms) for c in r.calls] == [
        ("gpt-4o", "A", 2, 5.0), ("gpt-4o-mini", "B", 4, 7.0)]


def test_expect_100_continue_exchange():
    r = Run()
    body = json.dumps({"model": "gpt-4o", "messages": []}).encode()
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))
    r.out(head, 0)
    r.inn(b"HTTP/1.1 100 Continue\r\n\r\n", 1)
    r.out(body, 2)
    r.inn(response({"id": "X", "choices": [{"finish_reason": "stop", "message": {}}]}), 9)
    c = r.one()
    assert c.id == "X" and c.stop_reason == "stop" and c.latency_ms == 9.0 and c.http_status == 200


def test_request_body_5mib_in_16kib_writes():
    r = Run()
    text = "x" * (5 * 1024 * 1024)
    req = request("/v1/messages", {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": text}]})
    for i, off in enumerate(range(0, len(req), 16384)):
        r.out(req[off:off + 16384], i * 0.01)
    r.inn(response({"type": "message", "content": [], "stop_reason": "end_turn",
                    "usage": {"input_tokens": 1300000, "output_tokens": 5}}), 100)
    c = r.one()
    assert c.request_bytes == len(req) and len(c.bodies.request_body) == len(req) - req.index(b"\r\n\r\n") - 4
    assert c.model == "claude-sonnet-4-5" and c.input_tokens == 1300000 and c.latency_ms == 100.0


def test_response_ends_at_connection_close():
    r = Run()
    r.out(request("/v1/chat/completions", {"model": "gpt-4o"}, host="api.openai.com"), 0)
    r.inn(response_head(200, {"Content-Type": "application/json"}) + b'{"id":"C","choices":[],', 3)
    r.inn(b'"usage":{"prompt_tokens":5,"completion_tokens":6}}', 4)
    r.close(9)
    c = r.one()
    assert not c.incomplete and c.output_tokens == 6 and c.latency_ms == 4.0


def test_chunked_request_body():
    r = Run()
    body = json.dumps({"model": "gpt-4o", "stream": False}).encode()
    r.out(b"POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
          + chunk_frame(body[:10]) + chunk_frame(body[10:]) + b"0\r\n\r\n", 0)
    r.inn(response({"id": "D", "choices": []}), 2)
    c = r.one()
    assert c.model == "gpt-4o" and c.bodies.request_body == body


def test_message_start_time_is_its_first_bytes_chunk():
    starts = []
    p = HttpParser(True, lambda h: starts.append(h.start_ns), lambda *a: None, lambda *a: None, lambda *a: None)
    p.feed(b"GET /a HTTP/1.1\r\n", 1)                 # head incomplete
    p.feed(b"\r\nGET /b HT", 2)                        # /a ends; /b starts in this chunk
    p.feed(b"TP/1.1\r\n", 3)
    p.feed(b"\r\nPOST /c HTTP/1.1\r\nContent-Length: 1\r\n\r\n", 4)
    assert starts == [1, 2, 4]
