"""SSE decoding against the WHATWG rules (https://html.spec.whatwg.org/multipage/server-sent-events.html)."""

from __future__ import annotations

from agtap.wire.sse import SseDecoder

STREAM = (b"\xef\xbb\xbf: a comment\n"
          b"event: message_start\n"
          b"data: {\"a\":1}\n\n"
          b"data:first\r\n"
          b"data: second\r\n"
          b"id: 42\r\n\r\n"
          b"event: only-name\r\r"          # no data: not dispatched
          b"data\r"                        # field with no colon: empty value
          b"\r"
          b"retry: 10\n"
          b"data:  two spaces\n\n"
          b"data: unfinished")             # no blank line: never dispatched


def expected():
    return [("message_start", b'{"a":1}', None),
            ("message", b"first\nsecond", "42"),
            ("message", b"", "42"),
            ("message", b" two spaces", "42")]


def decode(pieces, finish=True):
    d = SseDecoder()
    out = []
    for i, p in enumerate(pieces):
        out += [(e.event, e.data, e.id) for e in d.feed(p, i)]
    if finish:
        out += [(e.event, e.data, e.id) for e in d.finish(99)]
    return out


def test_whole_stream():
    assert decode([STREAM]) == expected()


def test_split_at_every_byte_boundary():
    for i in range(len(STREAM) + 1):
        assert decode([STREAM[:i], STREAM[i:]]) == expected(), i


def test_byte_at_a_time():
    assert decode([STREAM[i:i + 1] for i in range(len(STREAM))]) == expected()


# The shapes the in-place fast path reads ("event: X" + one "data: Y" line, or one "data: Y"
# line) next to ones it must leave to the full line parser, several events per chunk.
NEAR_FAST = (b"event: a\ndata: 1\n\n"
             b"data: 2\nid: 7\n\n"               # a second line: not the fast shape
             b"event: b\ndata: 3\ndata: 4\n\n"   # two data lines, joined by LF
             b"event: \ndata: 5\n\n"              # empty name: the default, "message" (WHATWG dispatch)
             b"event: c\ndata:6\n\n"              # no space after the colon
             b"data: event: d\n\n"                # looks like a field, is data
             b"data: 8\n\n")


def test_fast_shapes_and_their_neighbours():
    want = [("a", b"1", None), ("message", b"2", "7"), ("b", b"3\n4", "7"), ("message", b"5", "7"),
            ("c", b"6", "7"), ("message", b"event: d", "7"), ("message", b"8", "7")]
    assert decode([NEAR_FAST]) == want
    for i in range(len(NEAR_FAST) + 1):
        assert decode([NEAR_FAST[:i], NEAR_FAST[i:]]) == want, i


def test_event_carries_ts_of_completing_chunk():
    d = SseDecoder()
    assert d.feed(b"data: x\n", 10) == []
    (ev,) = d.feed(b"\n", 20)
    assert ev.ts_ns == 20 and ev.data == b"x"


def test_crlf_split_across_chunks_is_one_line_end():
    d = SseDecoder()
    assert d.feed(b"data: a\r", 1) == []
    assert d.feed(b"\n", 2) == []          # CRLF is one line end, not two: no blank line yet
    (ev,) = d.feed(b"\r\n", 3)
    assert ev.data == b"a"


def test_oversized_event_is_dropped_and_counted():
    d = SseDecoder(max_event=100)
    d.feed(b"data: " + b"x" * 200, 1)
    assert d.overflows == 1
    (ev,) = d.feed(b"\n\ndata: ok\n\n", 2)
    assert ev.data == b"ok"
