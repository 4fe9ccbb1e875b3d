"""Random and mutated bytes through Pipeline.feed: nothing may escape, counters stay consistent."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agtap.call import PROVIDERS
from agtap.capture.chunk import ConnClosed, Direction
from agtap.capture.connid import ConnId
from agtap.pipeline import Limits, Pipeline
from agtap.providers import platforms
from agtap.providers.pricing import PriceTable
from tests.support.h2wire import hostile_shapes, real_conversation
from tests.support.harness import chunk, chunk_frame, fixture, request, response, response_head, sse_blocks

PRICES = PriceTable(override=None)


def _seed_streams() -> list[list[tuple[bool, bytes]]]:
    """Valid conversations (egress?, bytes) to mutate."""
    sse = b"".join(chunk_frame(b) for b in sse_blocks(fixture("anthropic_stream_tool.sse"))) + b"0\r\n\r\n"
    mcp = [json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "x"}}).encode() + b"\n",
           json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"isError": True}}).encode() + b"\n"]
    return [
        [(True, request("/v1/messages", {"model": "claude-sonnet-4-5", "stream": True})),
         (False, response_head(200, {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"}) + sse)],
        [(True, request("/v1beta/models/gemini-2.5-pro:streamGenerateContent", {}, host="g")),
         (False, response(fixture("gemini_stream_array.json")))],
        [(True, request("/v1/chat/completions", {"model": "gpt-4o"}, host="o")),
         (False, response(fixture("openai_chat_tool.json")))],
        [(True, mcp[0]), (False, mcp[1])],
        [(True, request("/mcp", json.loads(mcp[0]), host="h", headers={"Mcp-Session-Id": "s1"})),
         (False, response_head(200, {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"})
          + chunk_frame(b"event: message\ndata: " + mcp[1] + b"\n") + b"0\r\n\r\n")],
        [(True, request("/v1/responses", {"model": "o3", "stream": True}, host="o")),
         (False, response_head(200, {"Content-Type": "text/event-stream", "Content-Length": "%d" % len(
             fixture("openai_responses_stream.sse"))}) + fixture("openai_responses_stream.sse"))],
        real_conversation(),   # HTTP/2, and hostile HTTP/2 peers
        *(hostile_shapes()[k] for k in ("hpack_bomb", "huge_frame_length", "endless_continuation")),
    ]


SEEDS = _seed_streams()


@st.composite
def mutated(draw):
    seed = draw(st.sampled_from(SEEDS))
    out = []
    for egress, data in seed:
        data = bytearray(data)
        for _ in range(draw(st.integers(0, 4))):
            op = draw(st.sampled_from(["flip", "delete", "insert", "dup"]))
            if not data:
                break
            i = draw(st.integers(0, len(data) - 1))
            if op == "flip":
                data[i] = draw(st.integers(0, 255))
            elif op == "delete":
                del data[i:i + draw(st.integers(1, 64))]
            elif op == "insert":
                data[i:i] = draw(st.binary(min_size=1, max_size=32))
            else:
                data[i:i] = data[i:i + draw(st.integers(1, 200))]
        # split into writes at random points
        cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
        prev = 0
        for c in cuts + [len(data)]:
            if c > prev:
                out.append((egress, bytes(data[prev:c]), draw(st.booleans()) and draw(st.booleans())))
            prev = c
    return out


random_items = st.lists(st.tuples(st.booleans(), st.binary(max_size=300), st.booleans()), max_size=12)


def drive(items, conn: str, close: str | None) -> Pipeline:
    conn = ConnId.parse(conn)
    emitted = []
    p = Pipeline(emitted.append, ignore_conn=lambda c: None, limits=Limits(max_body=4096, decompress_cap=8192),
                 prices=PRICES)
    t = 0
    for egress, data, cut in items:
        t += 1_000_000
        p.feed(chunk(Direction.EGRESS if egress else Direction.INGRESS, data, t, conn=conn, proc="x", cut=cut))
    if close:
        p.feed(ConnClosed(conn, t + 1, close))
    p.expire(t + 10**15)
    p.flush()
    assert p.stats.emit_errors == 0
    assert p.stats.conns_open == 0
    for c in emitted:
        c.to_dict()
        assert c.provider in PROVIDERS and c.platform in platforms.NAMES
        assert not c.incomplete or c.incomplete_reason
    return p


SETTINGS = settings(max_examples=int(__import__('os').environ.get('AGTAP_FUZZ_EXAMPLES', '300')), deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(items=mutated(), close=st.sampled_from([None, "closed", "process_exit"]),
       conn=st.sampled_from(["tls:1:a", "ipc:77"]))
def test_mutated_exchanges_never_raise(items, close, conn):
    p = drive(items, conn, close)
    assert p.stats.internal_errors == 0   # a bug caught by the safety net still fails this test


@SETTINGS
@given(items=random_items, close=st.sampled_from([None, "closed"]), conn=st.sampled_from(["sock:1:2", "ipc:5"]))
def test_random_bytes_never_raise(items, close, conn):
    p = drive(items, conn, close)
    assert p.stats.internal_errors == 0
