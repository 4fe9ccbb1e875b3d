"""HTTP/2 on the real kernel: the connections are captured whole, and every stream is a call.

The fake API speaks HTTP/2 (FakeApi(http2=True), tests/support/h2serve.py, python3-h2):
over TLS when the client offers "h2" in ALPN, in cleartext with prior knowledge (h2c), and
after `Upgrade: h2c`. The clients are real ones: curl (nghttp2), the official Python SDKs
with an HTTP/2 httpx client, Node's http2 module.

The capture tests decode what `agtap record` saved with hyperframe and hpack (independent of
agtap's decoder): the preface, the request's headers and the response's DATA must all be
there, in both directions, byte-exact in content.
"""

from __future__ import annotations

import subprocess
from collections import defaultdict

import hpack
import pytest
from hyperframe.frame import DataFrame, Frame, HeadersFrame, ContinuationFrame

from agtap.capture.chunk import Direction, Transport
from tests.support import FakeApi, Reply
from tests.support.clients import CURL
from tests.support.h2serve import PREFACE


@pytest.fixture
def h2_api(certs):
    with FakeApi(certs, http2=True) as api:
        yield api


@pytest.fixture
def h2c_api():
    with FakeApi(tls=False, http2=True) as api:
        yield api


def frames(data: bytes) -> dict[int, dict]:
    """stream id -> {"headers": [decoded header lists], "data": DATA bytes} of a captured
    direction (from the first frame: the preface, or a 101 answer, already removed)."""
    dec = hpack.Decoder()
    out: dict[int, dict] = defaultdict(lambda: {"headers": [], "data": b""})
    pos, block = 0, b""
    while pos + 9 <= len(data):
        f, length = Frame.parse_frame_header(memoryview(data[pos:pos + 9]))
        assert pos + 9 + length <= len(data), f"frame at {pos} cut: {length} bytes, {len(data) - pos - 9} left"
        f.parse_body(memoryview(data[pos + 9:pos + 9 + length]))
        pos += 9 + length
        if isinstance(f, (HeadersFrame, ContinuationFrame)):
            block += f.data
            if "END_HEADERS" in f.flags:
                out[f.stream_id]["headers"].append(dec.decode(block))
                block = b""
        elif isinstance(f, DataFrame):
            out[f.stream_id]["data"] += f.data
    assert pos == len(data), f"{len(data) - pos} bytes after the last whole frame"
    return out


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CURL, "-sS", *args], capture_output=True, text=True, timeout=30, check=True)


def post_args(api: FakeApi) -> list[str]:
    return ["-H", "content-type: application/json", "-d", '{"model":"claude-x","max_tokens":9,"stream":true}',
            *(["--cacert", str(api.certs.ca)] if api.tls else [])]


def the_conn(t, pid: int) -> dict[Direction, bytes]:
    streams = t.streams(pid)
    assert len(streams) == 1, f"expected one connection, got {sorted(streams)}"
    return next(iter(streams.values()))


def check_call(s: dict[Direction, bytes], ex, sid: int = 1) -> None:
    """The captured frames hold the request's headers and the response's bytes of stream `sid`."""
    req = frames(s[Direction.EGRESS])[sid]
    pseudo = dict(req["headers"][0])
    assert (pseudo[":method"], pseudo[":path"]) == ("POST", "/v1/messages")
    assert req["data"] == ex.body
    resp = frames(s[Direction.INGRESS])[sid]
    assert dict(resp["headers"][0])[":status"] == "200"
    assert resp["data"] == ex.response_body and ex.response_body.startswith(b"event: message_start")


def test_h2_over_tls_is_captured_from_the_preface_on(tracer_run, h2_api):
    h2_api.script(Reply(text="over h2", events=3))
    t = tracer_run()
    out = curl(*post_args(h2_api), "-w", "%{http_version}", h2_api.url("/v1/messages"))
    assert out.stdout.endswith("2"), "curl did not speak HTTP/2"
    t.stop()
    ex = h2_api.wait_for(1)[0]
    mine = [c for c in t.chunks() if c.transport is Transport.TLS and c.proc == "curl"
            and c.direction is Direction.EGRESS and c.data.startswith(PREFACE)]
    assert len(mine) == 1, "no (or more than one) TLS connection of curl began with the preface"
    s = the_conn(t, mine[0].pid)
    assert s[Direction.EGRESS].startswith(PREFACE)
    check_call({Direction.EGRESS: s[Direction.EGRESS][len(PREFACE):], Direction.INGRESS: s[Direction.INGRESS]}, ex)


def test_h2c_prior_knowledge_over_a_plain_socket(tracer_run, h2c_api):
    h2c_api.script(Reply(text="over h2c", events=3))
    t = tracer_run()
    curl(*post_args(h2c_api), "--http2-prior-knowledge", h2c_api.url("/v1/messages"))
    t.stop()
    ex = h2c_api.wait_for(1)[0]
    mine = [c for c in t.chunks() if c.transport is Transport.SOCKET and c.proc == "curl"
            and c.direction is Direction.EGRESS and c.data.startswith(PREFACE)]
    assert len(mine) == 1
    s = the_conn(t, mine[0].pid)
    check_call({Direction.EGRESS: s[Direction.EGRESS][len(PREFACE):], Direction.INGRESS: s[Direction.INGRESS]}, ex)


def test_upgrade_h2c_keeps_the_connection_after_the_101(tracer_run, h2c_api):
    """curl --http2 on http:// sends the POST with `Upgrade: h2c`; after the 101 the answer to it
    (stream 1) comes as HTTP/2 frames, and the client's preface follows: all of it captured."""
    h2c_api.script(Reply(text="upgraded", events=3))
    t = tracer_run()
    curl(*post_args(h2c_api), "--http2", h2c_api.url("/v1/messages"))
    t.stop()
    ex = h2c_api.wait_for(1)[0]
    mine = [c for c in t.chunks() if c.proc == "curl" and c.direction is Direction.EGRESS
            and c.data.startswith(b"POST /v1/messages HTTP/1.1")]
    assert len(mine) == 1
    s = the_conn(t, mine[0].pid)
    head, _, rest = s[Direction.EGRESS].partition(b"\r\n\r\n")
    assert b"Upgrade: h2c" in head
    body, preface, frames_out = rest.partition(PREFACE)
    assert preface and body == ex.body
    resp_head, _, resp_frames = s[Direction.INGRESS].partition(b"\r\n\r\n")
    assert resp_head.startswith(b"HTTP/1.1 101 ")
    assert frames(resp_frames)[1]["data"] == ex.response_body
