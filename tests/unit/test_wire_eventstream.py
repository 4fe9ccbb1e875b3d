"""AWS event-stream framing (agtap.wire.eventstream): botocore's parser, fed in pieces and bounded."""

from __future__ import annotations

import struct
import zlib

from agtap.wire.eventstream import EventStreamDecoder
from tests.support import eventstream

# AWS's own test vector for the smallest message (no headers, no payload), as in the
# aws-c-event-stream test suite's "empty_message": 16 bytes, both CRCs fixed.
EMPTY = bytes.fromhex("000000100000000005c248eb7d98c8ff")


def test_the_encoder_the_tests_use_writes_aws_s_test_vector():
    assert eventstream.message({}, b"") == EMPTY


def test_messages_come_out_whole_however_the_bytes_are_cut():
    stream = (eventstream.event("messageStart", {"role": "assistant"})
              + eventstream.event("contentBlockDelta", {"delta": {"text": "h\u00e9llo"}})
              + eventstream.exception("throttlingException", "slow down") + EMPTY)
    whole = EventStreamDecoder().feed(stream, 5)
    assert [(m.message_type, m.name, m.event_name) for m in whole] == [
        ("event", "messageStart", "messageStart"), ("event", "contentBlockDelta", "contentBlockDelta"),
        ("exception", "throttlingException", "exception:throttlingException"), ("event", "", "")]
    assert whole[1].payload == '{"delta":{"text":"h\u00e9llo"}}'.encode()
    assert whole[1].headers[":content-type"] == "application/json" and whole[0].ts_ns == 5
    for size in (1, 7, 13, 64):
        d = EventStreamDecoder()
        got = []
        for i in range(0, len(stream), size):
            got += [(m.headers, m.payload, m.ts_ns) for m in d.feed(stream[i:i + size], i)]
        assert [(h, p) for h, p, _ in got] == [(m.headers, m.payload) for m in whole]
        assert d.finish() is None and d.error is None
        # each message carries the time of the piece that completed it
        assert got[0][2] == ((len(eventstream.event("messageStart", {"role": "assistant"})) - 1) // size) * size


def test_a_bad_checksum_ends_the_stream_with_an_error_not_an_exception():
    good = eventstream.event("messageStop", {"stopReason": "end_turn"})
    bad = good[:-1] + bytes([good[-1] ^ 1])
    d = EventStreamDecoder()
    assert len(d.feed(good, 1)) == 1
    assert d.feed(bad + good, 2) == [] and d.error == "bad event stream message: ChecksumMismatch"
    assert d.feed(good, 3) == []            # nothing after an error: no resynchronising in a binary stream
    assert d.finish() == d.error


def test_a_bad_prelude_checksum_and_an_unknown_header_type_are_errors():
    m = bytearray(eventstream.event("x", {}))
    m[9] ^= 0xFF
    d = EventStreamDecoder()
    assert d.feed(bytes(m), 1) == [] and d.error.startswith("bad event stream message:")
    # header type 42 does not exist: re-checksum so only the type is wrong
    hb = b"\x01a" + b"\x2a" + b"\x00"
    prelude = struct.pack(">II", 16 + len(hb), len(hb))

    head = prelude + struct.pack(">I", zlib.crc32(prelude)) + hb
    msg = head + struct.pack(">I", zlib.crc32(head))
    d2 = EventStreamDecoder()
    assert d2.feed(msg, 1) == [] and d2.error.startswith("bad event stream message:")


def test_declared_lengths_are_bounded_before_anything_is_buffered():
    d = EventStreamDecoder(max_message=1024)
    huge = struct.pack(">II", 50 * 1024 * 1024, 0)
    assert d.feed(huge + b"\0" * 8, 1) == [] and d.error == "event stream message too large"
    assert not d._buf                       # the declared 50 MB were never waited for
    # a total length too small for its own framing (botocore would not move on from it)
    d2 = EventStreamDecoder()
    assert d2.feed(struct.pack(">II", 8, 0) + b"\0" * 8, 1) == []
    assert d2.error == "bad event stream message: length too small for its framing"
    d3 = EventStreamDecoder()
    assert d3.feed(struct.pack(">II", 20, 10) + b"\0" * 8, 1) == [] and d3.error is not None


def test_a_stream_cut_mid_message_says_so_at_the_end():
    m = eventstream.event("metadata", {"usage": {}})
    d = EventStreamDecoder()
    assert d.feed(m + m[:20], 1) and d.finish() == "event stream ends mid-message"
    clean = EventStreamDecoder()
    clean.feed(m, 1)
    assert clean.finish() is None


def test_without_botocore_the_stream_is_an_error_that_says_the_fix(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_botocore(name, *a, **kw):
        if name.startswith("botocore"):
            raise ImportError(name)
        return real_import(name, *a, **kw)
    monkeypatch.setattr(builtins, "__import__", no_botocore)
    d = EventStreamDecoder()
    assert d.feed(EMPTY, 1) == []
    assert d.error == "botocore is not installed (python3-botocore): event streams are not read"


def test_doctor_says_whether_bedrock_streams_can_be_read(monkeypatch):
    import importlib.util

    from agtap.capture import doctor
    assert doctor._botocore().verdict == "ok"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    c = doctor._botocore()
    assert c.verdict == "warn" and "python3-botocore" in c.line() and "Bedrock" in c.line()
