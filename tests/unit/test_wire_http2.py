"""agtap.wire.http2 on its own: frames across reads, HPACK per direction, bounds against hostile peers."""

from __future__ import annotations

import tracemalloc

import pytest
from hpack import Encoder
from hyperframe.frame import (ContinuationFrame, DataFrame, HeadersFrame, PingFrame, PriorityFrame, SettingsFrame,
                              WindowUpdateFrame)

from agtap.drivers.h2conn import MAX_STREAMS
from agtap.wire.http2 import HPACK_UNKNOWN, MAX_TABLE_SIZE, PREFACE, H2Connection, looks_like_frames
from tests.support.h2wire import H2Pair, client_hello, hostile_shapes
from tests.support.harness import Run


class Recorder:
    """The owner interface, writing down what the decoder says."""

    def __init__(self):
        self.events: list[tuple] = []

    def h2_headers(self, from_client, sid, headers, problem, end_stream, start_ts, start_wall, wire, ts):
        self.events.append(("headers", from_client, sid, headers, problem, end_stream, start_ts))

    def h2_data(self, from_client, sid, data, end_stream, ts, wire):
        if data or end_stream:
            self.events.append(("data", from_client, sid, data, end_stream))

    def h2_reset(self, from_client, sid, code, ts):
        self.events.append(("reset", from_client, sid, code))

    def h2_goaway(self, from_client, last_sid, code, ts):
        self.events.append(("goaway", from_client, last_sid, code))

    def h2_stream_lost(self, from_client, sid, reason, ts):
        self.events.append(("lost", from_client, sid, reason))

    def h2_problem(self, from_client, reason, ts):
        self.events.append(("problem", from_client, reason))

    def h2_broken(self, from_client, reason, ts):
        self.events.append(("broken", from_client, reason))

    def body(self, sid: int) -> bytes:
        return b"".join(e[3] for e in self.events if e[0] == "data" and e[2] == sid)


def frames(*fs) -> bytes:
    return b"".join(f.serialize() for f in fs)


def test_many_frames_in_one_read_and_one_frame_over_many_reads_give_the_same_events():
    enc = Encoder()
    block = enc.encode([(":method", "POST"), (":path", "/v1/messages"), (":authority", "h"), ("x-a", "1")])
    data = client_hello() + frames(
        PriorityFrame(1, depends_on=0, stream_weight=16),
        HeadersFrame(1, block[:5]),                                   # the block over 3 frames
        ContinuationFrame(1, block[5:9]),
        ContinuationFrame(1, block[9:], flags=["END_HEADERS"]),
        WindowUpdateFrame(0, window_increment=1000), PingFrame(0, b"12345678"),
        DataFrame(1, b'{"model":', flags=["PADDED"], pad_length=7),
        DataFrame(1, b'"m"}', flags=["END_STREAM"]))
    whole = Recorder()
    H2Connection(whole).egress(data, 1)
    assert [e[0] for e in whole.events] == ["headers", "data", "data"]   # END_STREAM with the last piece
    assert whole.events[0][3] == [(":method", "POST"), (":path", "/v1/messages"), (":authority", "h"), ("x-a", "1")]
    assert whole.body(1) == b'{"model":"m"}' and whole.events[-1][4] is True
    for step in (1, 2, 3, 7, 9, 10, 17):
        r = Recorder()
        c = H2Connection(r)
        for i in range(0, len(data), step):
            c.egress(data[i:i + step], i)
        assert [e[:3] for e in r.events if e[0] == "headers"] == [e[:3] for e in whole.events if e[0] == "headers"]
        assert r.body(1) == b'{"model":"m"}', step


def test_a_frame_starts_when_its_first_byte_came():
    r = Recorder()
    c = H2Connection(r)
    hs = frames(HeadersFrame(1, Encoder().encode([(":method", "GET")]), flags=["END_HEADERS"]))
    c.egress(client_hello() + hs[:4], 100)
    c.egress(hs[4:], 200)
    assert r.events[0][6] == 100


def test_header_table_size_setting_is_honoured():
    # The client lets the server's encoder use a 16 KiB table; the server's headers need it.
    pair = H2Pair(client_table_size=16384)
    for i in range(3):
        sid = pair.request("/v1/messages", {"model": "m"})
        pair.respond(sid, b"{}", headers=[(f"x-big-{j}", "v" * 1000) for j in range(10)])
    r = Recorder()
    c = H2Connection(r)
    for d, data in pair.writes:
        (c.egress if d.value == "egress" else c.ingress)(data, 0)
    answers = [e for e in r.events if e[0] == "headers" and not e[1]]
    assert len(answers) == 3 and all(e[4] is None for e in answers)
    assert all(("x-big-9", "v" * 1000) in e[3] for e in answers)
    assert c.server_hpack.dec.max_allowed_table_size == 16384 and c.server_hpack.synced


def test_a_late_joiner_never_guesses_and_recovers_what_it_can():
    enc = Encoder()
    enc.encode([("x-old", "before capture")])   # an entry the joiner never saw
    r = Recorder()
    c = H2Connection(r, late=True)
    c.egress(frames(HeadersFrame(1, enc.encode([(":method", "POST"), ("x-old", "before capture")]),
                                 flags=["END_HEADERS"]),
                    HeadersFrame(3, enc.encode([(":method", "POST"), ("x-new", "after")]), flags=["END_HEADERS"]),
                    HeadersFrame(5, enc.encode([(":method", "POST"), ("x-new", "after")]), flags=["END_HEADERS"])), 0)
    h = [e for e in r.events if e[0] == "headers"]
    assert h[0][3] is None and h[0][4] == HPACK_UNKNOWN
    assert h[1][3] == [(":method", "POST"), ("x-new", "after")]   # a literal: inserted after the restart
    assert h[2][3] == [(":method", "POST"), ("x-new", "after")]   # ...and named by index next time
    assert not c.client_hpack.synced


def test_a_lost_block_puts_hpack_out_of_step_and_is_reported_never_guessed():
    enc = Encoder()
    r = Recorder()
    c = H2Connection(r)
    c.egress(client_hello() + frames(HeadersFrame(1, enc.encode([("x-a", "1")]), flags=["END_HEADERS"])), 0)
    c.client.cut(1)                                           # this write's rest was not copied
    c.egress(frames(HeadersFrame(3, enc.encode([("x-a", "1")]), flags=["END_HEADERS"])), 2)
    assert r.events[-1][4] is None or r.events[-1][4] == HPACK_UNKNOWN   # nothing was lost before the cut
    blk = enc.encode([("x-b", "2")])
    hf = frames(HeadersFrame(5, blk, flags=["END_HEADERS"]))
    c.egress(hf[:10], 3)
    c.client.cut(3)                                           # the block is lost: 'x-b' was inserted
    c.egress(frames(HeadersFrame(7, enc.encode([("x-b", "2")]), flags=["END_HEADERS"])), 4)
    assert ("lost", True, 5, "cut") in r.events
    assert r.events[-1][3] is None and r.events[-1][4] == HPACK_UNKNOWN


def test_bad_input_stops_the_direction_with_one_reason():
    r = Recorder()
    H2Connection(r).egress(b"PRI * HTTP/1.1\r\n\r\n", 0)
    assert r.events == [("broken", True, "http2: bad client preface")]
    r = Recorder()
    c = H2Connection(r)
    c.egress(client_hello() + frames(HeadersFrame(1, b"\x82")) + frames(DataFrame(1, b"x")), 0)   # no END_HEADERS
    c.egress(frames(DataFrame(1, b"y")), 1)
    assert r.events == [("broken", True, "http2: header block interrupted by another frame")]
    r = Recorder()
    H2Connection(r).ingress(frames(ContinuationFrame(1, b"\x82", flags=["END_HEADERS"])), 0)   # found by fuzz/run.py
    assert r.events == [("broken", False, "http2: CONTINUATION outside a header block")]
    r = Recorder()
    H2Connection(r).ingress(b"\x00\x00\x08\x00\x01\x00\x00\x00\x00" + b"\x00" * 8, 0)   # DATA on stream 0
    assert r.events[0][0] == "broken" and "bad frame header" in r.events[0][2]


def test_looks_like_frames():
    enc = Encoder()
    assert looks_like_frames(frames(WindowUpdateFrame(0, window_increment=5),
                                    HeadersFrame(3, enc.encode([(":method", "GET")]), flags=["END_HEADERS"])))
    assert not looks_like_frames(b"POST /v1/messages HTTP/1.1\r\n")
    assert not looks_like_frames(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")   # a TLS ClientHello
    assert not looks_like_frames(b"\x00" * 9)                                          # DATA on stream 0
    assert not looks_like_frames(b"{\"jsonrpc\":\"2.0\"}\n")
    assert not looks_like_frames(PREFACE)


# -- hostile peers: bounded memory, counted, never a crash ------------------------------------------------

def _fed(shape: list[tuple[bool, bytes]], piece: int = 16384) -> tuple[Run, int]:
    r = Run()
    tracemalloc.start()
    try:
        t = 0.0
        for egress, data in shape:
            for i in range(0, len(data), piece):
                (r.out if egress else r.inn)(data[i:i + piece], t)
                t += 0.001
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    r.close(t + 1)
    return r, peak


SHAPES = hostile_shapes(scale=16)


def test_huge_frame_lengths_cost_only_the_bytes_in_flight():
    r, peak = _fed(SHAPES["huge_frame_length"])
    assert peak < 1 << 20
    c = r.one(clean=False)      # the stream's body was cut short by the close: one incomplete call
    assert c.incomplete_reason == "connection_closed" and c.bodies.request_body.startswith(b"{{{")
    r, peak = _fed(SHAPES["huge_header_frame"])
    assert peak < 1 << 20 and r.calls == []
    assert r.p.stats.parse_errors == 1     # counted when it went past the cap, not when (if) it ends


def test_hpack_bomb_is_refused_and_counted():
    shape = SHAPES["hpack_bomb"]
    assert sum(len(d) for _, d in shape) < 64 * 1024                  # small on the wire...
    r, peak = _fed(shape)
    assert peak < 2 << 20                                              # ...not inflated to megabytes
    assert r.calls == [] and r.p.stats.parse_errors == 1


def test_endless_continuation_is_skipped_not_kept():
    shape = SHAPES["endless_continuation"]
    assert sum(len(d) for _, d in shape) > 1 << 20
    r, peak = _fed(shape)
    assert peak < 1 << 20 and r.p.stats.parse_errors == 1
    conn = H2Connection(Recorder())
    for _, d in shape:
        conn.egress(d, 0)
    assert conn.client.block == [] and conn.client.block_over    # nothing kept, waiting for END_HEADERS


def test_ten_thousand_streams():
    r, peak = _fed(SHAPES["many_open_streams"])                       # 4800 opened, none answered
    assert len(r.calls) == 4800 and r.p.stats.parse_errors == 4800 - MAX_STREAMS
    assert sum(c.incomplete_reason == "evicted: too many http2 streams" for c in r.calls) == 4800 - MAX_STREAMS
    assert peak < 32 << 20
    many = hostile_shapes(scale=34)["many_streams"]                   # 10,200 asked and answered in turn
    r, peak = _fed(many)
    assert len(r.calls) == 10_200 and r.p.stats.parse_errors == 0
    assert all(c.input_tokens == 1 and not c.incomplete for c in r.calls)


def test_table_size_past_the_cap_is_an_error_not_an_allocation():
    enc = Encoder()
    enc.header_table_size = 1 << 20       # the encoder announces a 1 MiB table it was never allowed
    r = Recorder()
    c = H2Connection(r)
    c.egress(client_hello() + frames(SettingsFrame(0, settings={SettingsFrame.HEADER_TABLE_SIZE: 1 << 30})), 0)
    c.ingress(frames(HeadersFrame(1, enc.encode([(":status", "200")]), flags=["END_HEADERS"])), 1)
    assert c.server_hpack.dec.header_table_size <= MAX_TABLE_SIZE
    assert r.events[-1][0] == "headers" and r.events[-1][4].startswith("parse_error: http2 hpack")


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_every_hostile_shape_split_anywhere_never_raises(name):
    shape = hostile_shapes(scale=1)[name]
    for piece in (1, 7, 4096):
        if piece == 1 and sum(len(d) for _, d in shape) > 30_000:
            continue
        r, _ = _fed(shape, piece)
        assert r.p.stats.internal_errors == 0 and r.p.stats.conns_open == 0


def test_doctor_says_when_the_http2_modules_are_missing(monkeypatch):
    import sys
    from agtap.capture.doctor import _http2
    ok = _http2()
    assert ok.verdict == "ok" and "hpack 4." in ok.line() and "hyperframe 6." in ok.line()
    monkeypatch.setitem(sys.modules, "hpack", None)   # import hpack now raises ImportError
    bad = _http2()
    assert bad.verdict == "FAIL" and "hpack is not importable" in bad.line()
    assert "apt-get install python3-hpack python3-hyperframe" in bad.line()
