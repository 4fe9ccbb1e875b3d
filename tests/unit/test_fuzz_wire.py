"""Property tests on the wire decoders and the pipeline: the way bytes are cut into writes must not matter.

The capture layer hands the pipeline whatever one SSL_read/write or syscall moved: any split of
the same stream is possible (TLS records, short reads, a 4 MiB cap). So for random and mutated
real exchanges, feeding the bytes whole and feeding them cut at hypothesis-chosen points must give
the same events, lines, objects, messages and calls. Also: the long fuzz run's own harness
(fuzz/run.py, every target and its checks) on hypothesis inputs, so `make test` keeps it working.

tests/unit/test_pipeline_fuzz.py (random and mutated bytes through Pipeline.feed: nothing escapes)
is the other half; AGTAP_FUZZ_EXAMPLES raises the example count of both.
"""

from __future__ import annotations

import gzip
import os
import zlib

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agtap.capture.chunk import ConnClosed, Direction
from agtap.capture.connid import ConnId
from agtap.pipeline import Limits, Pipeline
from agtap.providers.pricing import PriceTable
from agtap.wire.encoding import BodyDecoder
from agtap.wire.eventstream import EventStreamDecoder
from agtap.wire.http1 import HttpParser
from agtap.wire.jsonarray import JsonArrayStream
from agtap.wire.ndjson import LineDecoder
from agtap.wire.sse import SseDecoder
from tests.support.harness import chunk
from fuzz import run as fuzz_run
from fuzz.seeds import bedrock_stream, seeds

SETTINGS = settings(max_examples=int(os.environ.get("AGTAP_FUZZ_EXAMPLES", "200")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PRICES = PriceTable(override=None)
SEEDS = seeds()
TOKENS = fuzz_run.TOKENS


@st.composite
def mutated_bytes(draw, parts=None):
    """One side of a real exchange (or both, concatenated), a few mutations applied."""
    seed = draw(st.sampled_from(SEEDS))
    data = bytearray(b"".join(d for eg, d in seed if parts is None or eg == parts))
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        op = draw(st.integers(0, 3))
        if op == 0:
            data[i] = draw(st.integers(0, 255))
        elif op == 1:
            del data[i:i + draw(st.integers(1, 64))]
        elif op == 2:
            data[i:i] = draw(st.sampled_from(TOKENS))
        else:
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


any_bytes = st.one_of(st.binary(max_size=600), mutated_bytes())


@st.composite
def cuts(draw, data: bytes) -> list[bytes]:
    points = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=12))))
    out, prev = [], 0
    for p in points + [len(data)]:
        if p > prev:
            out.append(data[prev:p])
        prev = p
    return out


def split_of(data_strategy):
    return data_strategy.flatmap(lambda d: st.tuples(st.just(d), cuts(d)))


_STARTS = (b"HTTP/1.", b"POST ", b"GET ", b"PUT ", b"DELETE ", b"PATCH ", b"HEAD ", b"OPTIONS ")


# --- wire decoders --------------------------------------------------------------------------

def _sse(pieces, max_event):
    # The events only: `overflows` may differ (an event longer than max_event that arrives in one
    # piece is passed on, one that must be buffered across pieces is dropped; memory stays bounded).
    d = SseDecoder(max_event=max_event)
    evs = []
    for i, p in enumerate(pieces):
        evs += d.feed(p, i)
    evs += d.finish(len(pieces))
    return [(e.event, bytes(e.data), e.id) for e in evs]


@SETTINGS
@given(split_of(any_bytes), st.sampled_from([16 * 1024 * 1024]))
def test_sse_events_do_not_depend_on_the_cuts(case, max_event):
    data, pieces = case
    assert _sse(pieces, max_event) == _sse([data], max_event)


def _lines(pieces, max_line):
    d = LineDecoder(max_line=max_line)
    out = []
    for i, p in enumerate(pieces):
        out += [line for line, _a, _b in d.feed(p, i)]
    return out, d.overflows


@SETTINGS
@given(split_of(any_bytes), st.sampled_from([32, 16 * 1024 * 1024]))
def test_ndjson_lines_do_not_depend_on_the_cuts(case, max_line):
    data, pieces = case
    assert _lines(pieces, max_line) == _lines([data], max_line)


def _event_stream(pieces):
    d = EventStreamDecoder(max_message=1024)
    out = []
    for i, p in enumerate(pieces):
        out += [(m.headers, m.payload) for m in d.feed(p, i)]
        assert len(d._buf) <= 1024      # bounded whatever the bytes say
    return out, d.finish()


@st.composite
def mutated_event_stream(draw):
    """A real ConverseStream body with a few bytes changed (lengths, CRCs, headers, payloads)."""
    data = bytearray(bedrock_stream())
    for _ in range(draw(st.integers(1, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@SETTINGS
@given(split_of(st.one_of(any_bytes, st.just(bedrock_stream()), mutated_event_stream())))
def test_event_stream_messages_do_not_depend_on_the_cuts(case):
    data, pieces = case
    assert _event_stream(pieces) == _event_stream([data])


def _array(pieces):
    d = JsonArrayStream(max_element=1 << 20)
    out = []
    for p in pieces:
        out += d.feed(p)
    out += d.finish()
    return out, d.error is None


@SETTINGS
@given(split_of(st.one_of(any_bytes, st.just(SEEDS[10][1][1].split(b"\r\n\r\n", 1)[1]))))
def test_json_array_elements_do_not_depend_on_the_cuts(case):
    data, pieces = case
    assert _array(pieces) == _array([data])


def _http(pieces, is_request):
    msgs = []

    def head(h):
        msgs.append([h.method, h.target, h.status, list(h.headers), b"", False])

    def body(h, data, ts):
        msgs[-1][4] += data

    def end(h, ts):
        msgs[-1][5] = True
    errors = []
    p = HttpParser(is_request, head, body, end, lambda reason, ts: errors.append(reason), max_head=2048)
    for i, piece in enumerate(pieces):
        p.feed(piece, i)
    p.close(len(pieces))
    return msgs, errors


@SETTINGS
@given(st.booleans().flatmap(lambda req: st.tuples(st.just(req), split_of(
    st.one_of(mutated_bytes(parts=req), st.binary(max_size=300))))))
def test_http_messages_do_not_depend_on_the_cuts(case):
    is_request, (data, pieces) = case
    whole, split = _http([data], is_request), _http(pieces, is_request)
    # After an error the parser resumes at a line start or at a piece start (where the kernel side
    # resumes copying), which depends on the cuts by design: compare inputs that parse cleanly.
    if not whole[1] and not split[1]:
        assert split == whole
    else:
        assert whole[1] or split[1]


def test_http_head_end_does_not_depend_on_the_cuts():
    """The head ends at the earliest blank line (found here: a later CRLF blank line in the same piece won)."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\r\n\n"
    body = b"5\r\nhello\r\n0\r\n\r\n"
    whole = _http([head + body], False)
    assert _http([head, body], False) == whole
    assert whole[0] and whole[0][0][2] == 200 and whole[0][0][4] == b"hello"


def _decode(enc, pieces, cap):
    d = BodyDecoder(enc, cap)
    out = b"".join(d.feed(p) for p in pieces) + d.flush()
    return out, d.capped, d.error is None


@st.composite
def encoded(draw):
    enc = draw(st.sampled_from(["gzip", "deflate", "br", "zstd", "identity"]))
    raw = draw(st.one_of(st.binary(max_size=2000), mutated_bytes()))
    if enc == "gzip":
        data = gzip.compress(raw)
    elif enc == "deflate":
        data = zlib.compress(raw)
    elif enc == "br":
        import brotli
        data = brotli.compress(raw)
    elif enc == "zstd":
        import zstandard
        data = zstandard.ZstdCompressor().compress(raw)
    else:
        data = raw
    if data and draw(st.booleans()):          # a corrupt stream now and then
        b = bytearray(data)
        b[draw(st.integers(0, len(b) - 1))] ^= 0xFF
        data, raw = bytes(b), None
    return enc, raw, data


@SETTINGS
@given(encoded().flatmap(lambda e: st.tuples(st.just(e), cuts(e[2]))), st.sampled_from([100, 1 << 20]))
def test_decoding_does_not_depend_on_the_cuts_and_never_passes_the_cap(case, cap):
    (enc, raw, data), pieces = case
    whole = _decode(enc, [data], cap)
    split = _decode(enc, pieces, cap)
    if enc != "identity":              # identity is not decoded: the body cap (max_body) applies there
        assert len(split[0]) <= cap and len(whole[0]) <= cap
    if whole[2] and split[2]:          # where both decode cleanly, the output is the same
        assert split[:2] == whole[:2]
    if raw is not None and not whole[1]:      # intact and under the cap: the original comes back
        assert whole == (raw, False, True) and split == whole


def test_raw_deflate_decodes_however_it_is_cut():
    """zlib-wrapped or raw deflate is judged on the first 2 bytes, even when they arrive apart (found here)."""
    raw = b'{"a": "' + b"x" * 500 + b'"}'
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = c.compress(raw) + c.flush()
    assert _decode("deflate", [data], 1 << 20) == (raw, False, True)
    assert _decode("deflate", [data[:1], data[1:]], 1 << 20) == (raw, False, True)


# --- the pipeline ------------------------------------------------------------------------------

FIELDS = ("provider", "kind", "model", "input_tokens", "output_tokens", "cache_read_input_tokens",
          "cache_creation_input_tokens", "stop_reason", "tools", "streaming", "http_status", "incomplete",
          "incomplete_reason", "id", "platform", "response_model", "operation", "request_bytes", "response_bytes")


def _reason(r):
    # the kind of problem, not the decoder's wording (zlib names the first bad byte it sees)
    return r.split(":")[0] if r else r


def _calls(items, conn):
    calls = []
    p = Pipeline(calls.append, ignore_conn=lambda c: None, prices=PRICES,
                 limits=Limits(max_body=1 << 20, decompress_cap=1 << 20))
    for t, (egress, data) in enumerate(items):
        p.feed(chunk(Direction.EGRESS if egress else Direction.INGRESS, data, 10**9 + t, conn=conn,
                     wall_ns=10**18 + t, pid=7, proc="c"))
    p.feed(ConnClosed(conn, 10**9 + len(items) + 1, "closed"))
    p.flush()
    assert p.stats.internal_errors == 0
    return [tuple(_reason(getattr(c, f)) if f == "incomplete_reason" else getattr(c, f) for f in FIELDS)
            for c in calls]


@st.composite
def exchange_cut(draw):
    seed = draw(st.sampled_from(SEEDS))
    whole, pieces = [], []
    for egress, data in seed:
        whole.append((egress, data))
        pieces += [(egress, p) for p in draw(cuts(data))]
    conn = ConnId.ipc_channel(42) if seed[0][1][:1] == b"{" else ConnId.tls(7, 0xAB)
    return whole, pieces, conn


@SETTINGS
@given(exchange_cut())
def test_real_exchanges_give_the_same_calls_however_they_are_cut(case):
    whole, pieces, conn = case
    expect = _calls(whole, conn)
    assert expect, "a seed exchange must make a call"
    assert _calls(pieces, conn) == expect


# After a parse error, HttpParser looks for the next message at a line start or at the start of a
# piece (where the kernel side resumes copying): which of those exist depends on the cuts, by design.
# So mutations are made to exchanges with one HTTP request (keep-alive seeds are cut-tested unmutated).
SINGLE = [s for s in SEEDS if sum(1 for eg, d in s if eg and d.startswith(_STARTS)) <= 1]


@st.composite
def mutated_exchange_cut(draw):
    seed = draw(st.sampled_from(SINGLE))
    whole, pieces = [], []
    for egress, data in seed:
        b = bytearray(data)
        for _ in range(draw(st.integers(0, 3))):
            if not b:
                break
            i = draw(st.integers(0, len(b) - 1))
            op = draw(st.integers(0, 2))
            if op == 0:
                b[i] = draw(st.integers(0, 255))
            elif op == 1:
                del b[i:i + draw(st.integers(1, 32))]
            else:
                b[i:i] = draw(st.sampled_from(TOKENS))
        data = bytes(b)
        whole.append((egress, data))
        pieces += [(egress, p) for p in draw(cuts(data))]
    conn = ConnId.ipc_channel(42) if seed[0][1][:1] == b"{" else ConnId.tls(7, 0xAB)
    return whole, pieces, conn, seed


@SETTINGS
@given(mutated_exchange_cut())
def test_mutated_exchanges_give_the_same_calls_however_they_are_cut(case):
    whole, pieces, conn, seed = case
    # A connection whose first bytes are not a message start is ignored until a write that begins
    # with a request line (the kernel side resumes copying only there): that is cut-dependent by
    # design, so the first bytes stay as in the seed.
    assume(whole[0][1][:12] == seed[0][1][:12])
    expect, got = _calls(whole, conn), _calls(pieces, conn)
    # Always the same calls, with the same identity and outcome. The numbers too when the call is
    # whole: once bytes are broken, how much was decoded before the error depends on the cuts (zlib
    # returns nothing from a call that fails, e.g. on a bad CRC after the last byte of JSON).
    outcome = [c[:3] + c[9:12] for c in expect]
    assert [c[:3] + c[9:12] for c in got] == outcome
    for e, g in zip(expect, got):
        if not e[11] and not g[11]:
            assert g == e


# --- the long run's harness ----------------------------------------------------------------------

fuzz_run._import_targets(expose=False)   # no patching of Pipeline in the test process


@SETTINGS
@given(st.binary(max_size=3000))
def test_fuzz_harness_targets_hold_on_hypothesis_inputs(data):
    h = fuzz_run.Harness()
    h.one(data)          # raises fuzz_run.Failure (or anything) when a check fails
