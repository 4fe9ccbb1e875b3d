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

import json
import subprocess
import threading
import time
from collections import defaultdict

import hpack
import pytest
from hyperframe.frame import ContinuationFrame, DataFrame, Frame, HeadersFrame

from agtap.capture.chunk import Chunk, Direction, Transport
from tests.support import API_KEYS, FakeApi, Reply, ToolCall, run_client
from tests.support.clients import CLIENTS_DIR, CURL, NODE, client_env
from tests.support.agtapd import wait_until
from tests.support.h2serve import PREFACE
from tests.support.obs.prom import free_port, scraped


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


def curl(*args: str) -> tuple[int, str]:
    """Run curl; (its pid, its stdout). The pid picks its chunks: other curls on the machine
    (another suite's tests, an earlier test's client) are captured by the same tracer."""
    p = subprocess.Popen([CURL, "-sS", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    return p.pid, out


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
    pid, out = curl(*post_args(h2_api), "-w", "%{http_version}", h2_api.url("/v1/messages"))
    assert out.endswith("2"), "curl did not speak HTTP/2"
    t.stop()
    ex = h2_api.wait_for(1)[0]
    mine = [c for c in t.chunks() if c.transport is Transport.TLS and c.pid == pid
            and c.direction is Direction.EGRESS and c.data.startswith(PREFACE)]
    assert len(mine) == 1, "no (or more than one) TLS connection of curl began with the preface"
    s = the_conn(t, mine[0].pid)
    assert s[Direction.EGRESS].startswith(PREFACE)
    check_call({Direction.EGRESS: s[Direction.EGRESS][len(PREFACE):], Direction.INGRESS: s[Direction.INGRESS]}, ex)


def test_h2c_prior_knowledge_over_a_plain_socket(tracer_run, h2c_api):
    h2c_api.script(Reply(text="over h2c", events=3))
    t = tracer_run()
    pid, _ = curl(*post_args(h2c_api), "--http2-prior-knowledge", h2c_api.url("/v1/messages"))
    t.stop()
    ex = h2c_api.wait_for(1)[0]
    mine = [c for c in t.chunks() if c.transport is Transport.SOCKET and c.pid == pid
            and c.direction is Direction.EGRESS and c.data.startswith(PREFACE)]
    assert len(mine) == 1
    s = the_conn(t, mine[0].pid)
    check_call({Direction.EGRESS: s[Direction.EGRESS][len(PREFACE):], Direction.INGRESS: s[Direction.INGRESS]}, ex)


def test_upgrade_h2c_keeps_the_connection_after_the_101(tracer_run, h2c_api):
    """curl --http2 on http:// sends the POST with `Upgrade: h2c`; after the 101 the answer to it
    (stream 1) comes as HTTP/2 frames, and the client's preface follows: all of it captured."""
    h2c_api.script(Reply(text="upgraded", events=3))
    t = tracer_run()
    pid, _ = curl(*post_args(h2c_api), "--http2", h2c_api.url("/v1/messages"))
    t.stop()
    ex = h2c_api.wait_for(1)[0]
    mine = [c for c in t.chunks() if c.pid == pid and c.direction is Direction.EGRESS
            and c.transport is Transport.SOCKET and c.data.startswith(b"POST /v1/messages HTTP/1.1")]
    assert len(mine) == 1
    s = the_conn(t, mine[0].pid)
    head, _, rest = s[Direction.EGRESS].partition(b"\r\n\r\n")
    assert b"Upgrade: h2c" in head
    body, preface, frames_out = rest.partition(PREFACE)
    assert preface and body == ex.body
    resp_head, _, resp_frames = s[Direction.INGRESS].partition(b"\r\n\r\n")
    assert resp_head.startswith(b"HTTP/1.1 101 ")
    assert frames(resp_frames)[1]["data"] == ex.response_body


# --- what non-LLM streams cost: their DATA is not copied (bpf/h2.h) -------------------------

NODE_HTTP2 = CLIENTS_DIR / "node_http2.mjs"
ANTHROPIC_STREAM = {"model": "claude-x", "max_tokens": 9, "stream": True,
                    "messages": [{"role": "user", "content": "hi"}]}


def node_http2(api: FakeApi, plan: list, timeout: float = 60) -> dict:
    out = subprocess.run([NODE, str(NODE_HTTP2), "--base-url", api.base_url, "--plan", json.dumps(plan)],
                         capture_output=True, text=True, timeout=timeout, env=client_env(api, API_KEYS["curl"]))
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.splitlines()[-1])


class StreamDropper:
    """What the pipeline does for a stream no provider wants, done by the test: read the
    client's request headers as they are captured and call Tracer.ignore_stream for /bulk/."""

    def __init__(self):
        self.tracer = None
        self.items: list = []
        self.buf: dict = defaultdict(bytes)
        self.dec: dict = {}
        self.ignored: list[int] = []

    def __call__(self, item) -> None:
        self.items.append(item)
        if not isinstance(item, Chunk) or item.direction is not Direction.EGRESS:
            return
        data = self.buf[item.conn] + item.data
        if item.conn not in self.dec:
            if not data.startswith(PREFACE):
                return
            data, self.dec[item.conn] = data[len(PREFACE):], hpack.Decoder()
        while len(data) >= 9:
            f, length = Frame.parse_frame_header(memoryview(data[:9]))
            if len(data) < 9 + length:
                break
            f.parse_body(memoryview(data[9:9 + length]))
            data = data[9 + length:]
            if isinstance(f, HeadersFrame) and dict(self.dec[item.conn].decode(f.data)).get(":path", "").startswith("/bulk/"):
                self.tracer.ignore_stream(item.conn, f.stream_id)
                self.ignored.append(f.stream_id)
        self.buf[item.conn] = data


@pytest.fixture(scope="module")
def dropping_tracer(_need_root):
    from agtap.capture.tracer import Tracer
    from agtap.config import Config
    dropper = StreamDropper()
    tr = dropper.tracer = Tracer(Config(runtime_dir="/run/agtap"), dropper)
    tr.start()
    stop = threading.Event()
    th = threading.Thread(target=lambda: [tr.poll(50) for _ in iter(stop.is_set, True)], daemon=True)
    th.start()
    yield dropper
    stop.set()
    th.join(5)
    tr.stop()


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "h2c"])
def test_data_of_ignored_streams_is_not_copied_and_the_llm_stream_is_whole(dropping_tracer, certs, tls):
    """12 MiB of downloads and a streamed LLM call share one connection, one download in flight
    beside the call: the downloads' DATA payload stays in the kernel (their frames come with length 0),
    the call's frames come whole, and what userspace got still decodes frame by frame."""
    d = dropping_tracer
    bulk = [8 << 20, 4 << 20]
    with FakeApi(certs, tls=tls, http2=True) as api:
        api.script(Reply(text="the call beside the downloads", events=6, event_delay=0.05))
        before = d.tracer.counters()
        out = node_http2(api, [{"method": "GET", "path": f"/bulk/{bulk[0]}"},
                               [{"method": "GET", "path": f"/bulk/{bulk[1]}"},
                                {"path": "/v1/messages", "body": ANTHROPIC_STREAM}]])
        exs = api.wait_for(3)
    pid = out["pid"]
    llm = next(ex for ex in exs if ex.path == "/v1/messages")
    assert [r["bytes"] for r in out["results"]] == [*bulk, len(llm.response_body)]
    time.sleep(1)
    after = d.tracer.counters()
    mine = [c for c in d.items if isinstance(c, Chunk) and c.pid == pid]
    conns = {c.conn for c in mine}
    assert len(conns) == 1, conns
    ingress = b"".join(c.data for c in mine if c.direction is Direction.INGRESS)
    got = frames(ingress)                       # whole frames, nothing left over
    sid = next(s for s, v in got.items() if v["headers"] and dict(v["headers"][0]).get(":status") == "200"
               and v["data"].startswith(b"event: message_start"))
    assert got[sid]["data"] == llm.response_body
    assert len(d.ignored) >= 2
    assert sum(len(got[s]["data"]) for s in d.ignored) < 0.05 * sum(bulk)
    assert len(ingress) < 0.05 * sum(bulk), f"{len(ingress)} bytes reached userspace for {sum(bulk)} downloaded"
    assert after["h2_dropped_bytes"] - before["h2_dropped_bytes"] > 0.9 * sum(bulk)
    assert after["h2_walks_lost"] == before["h2_walks_lost"]
    print(f"h2 {'tls' if tls else 'h2c'}: {len(ingress)} bytes delivered for {sum(bulk)} downloaded, "
          f"{after['h2_dropped_bytes'] - before['h2_dropped_bytes']} dropped in the kernel")


def test_upgrade_h2c_connection_is_walked_too(agtapd, h2c_api):
    """curl --http2 on http:// asks `Upgrade: h2c` with the LLM call (stream 1), then downloads 8 MiB
    on the same connection (stream 3): the kernel walks the server's frames after the 101 too (from
    the read after the client's preface, checked to start at a frame), so the download's DATA stays
    in the kernel once the daemon has marked its stream."""
    bulk = 8 << 20
    port = free_port()
    d = agtapd("-c", "curl", "--metrics-addr", f"127.0.0.1:{port}")
    names = ("agtap_http2_dropped_bytes_total", "agtap_capture_bytes_total", "agtap_http2_walks_lost_total")
    before = {n: scraped(port, n) for n in names}
    h2c_api.script(Reply(**REPLY, events=3))
    out = subprocess.run([CURL, "-sS", "--http2", *post_args(h2c_api)[:4], h2c_api.url("/v1/messages"),
                          "--next", "--http2", "-o", "/dev/null", "-w", "%{http_version} %{size_download}",
                          "--limit-rate", "4M",   # ~2 s: the daemon marks the stream while it flows (at 16M, ~0.5 s,
                                                     # a daemon lagging under the whole tier's load marked it too late)
                          h2c_api.url(f"/bulk/{bulk}")], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.startswith("event: message_start") and out.stdout.endswith(f"2 {bulk}"), out.stdout[-200:]
    exs = h2c_api.wait_for(2)
    assert [ex.http_version for ex in exs] == ["2", "2"] and len({ex.conn for ex in exs}) == 1
    evs = wait_until(lambda: [e for e in d.events() if e.get("server_port") == h2c_api.port], 30)
    assert len(evs) == 1, evs
    check_event(evs[0], h2c_api, dict(ANT, streaming=True, stop_reason="end_turn", input_tokens=31, output_tokens=7))
    after = {n: scraped(port, n) for n in names}
    delta = {n: after[n] - before[n] for n in names}
    # what flows before the daemon has read the GET's headers is copied (a few windows, more under load)
    assert delta["agtap_http2_dropped_bytes_total"] > 0.5 * bulk, delta
    assert delta["agtap_capture_bytes_total"] < 0.5 * bulk, delta
    assert delta["agtap_http2_walks_lost_total"] == 0, delta
    print(f"h2c upgrade: {delta}")
    assert d.stop() == 0


# --- every stream a call: official clients -> one event each, http_version "2" -------------

SERVED = "fake-served-h2-model"
REPLY = dict(text="Hello over HTTP/2.", input_tokens=31, output_tokens=7, model=SERVED, cache_read_input_tokens=3)
WEATHER = [ToolCall("get_weather", {"city": "Paris"})]


def settled(daemon, api: FakeApi, pid: int, n: int = 1) -> list[dict]:
    """`pid`'s events once there are n and a sentinel call made after them has its event (the
    daemon handles records in order: whatever the client's records could still cause is in)."""
    daemon.events(pid, n=n, timeout=60)
    sentinel = run_client("curl", api, "anthropic").check()
    assert daemon.events(sentinel.pid, n=1, timeout=30), "the sentinel call has no event"
    return daemon.events(pid)


def check_event(ev: dict, api: FakeApi, want: dict, complete: bool = True) -> None:
    for k, v in want.items():
        assert ev[k] == v, (k, ev)
    assert ev["http_version"] == "2" and ev["kind"] == "llm_call", ev
    assert ev["server_address"] == "127.0.0.1" and ev["server_port"] == api.port, ev
    assert ev["latency_ms"] > 0 and (ev["incomplete"] is not complete), ev
    if ev["streaming"]:
        assert 0 < ev["ttft_ms"] <= ev["latency_ms"], ev


ANT = dict(provider="anthropic", response_model=SERVED)
OAI = dict(provider="openai", response_model=SERVED)
SDK_CASES = [
    ("python-anthropic", "stream", Reply(**REPLY),
     dict(ANT, streaming=True, stop_reason="end_turn", tools=[], input_tokens=31, output_tokens=7, http_status=200)),
    ("python-anthropic", "nonstream", Reply(**REPLY),
     dict(ANT, streaming=False, stop_reason="end_turn", tools=[], input_tokens=31, output_tokens=7, http_status=200)),
    ("python-anthropic", "tools-stream", Reply(**REPLY, tool_calls=WEATHER),
     dict(ANT, streaming=True, stop_reason="tool_use", tools=["get_weather"], output_tokens=7)),
    ("python-anthropic", "nonstream", Reply(status=429),
     dict(provider="anthropic", http_status=429, stop_reason="error:rate_limit_error")),
    ("python-openai", "chat-stream", Reply(**REPLY),
     dict(OAI, streaming=True, stop_reason="stop", tools=[], input_tokens=31, output_tokens=7, http_status=200)),
    ("python-openai", "chat", Reply(**REPLY),
     dict(OAI, streaming=False, stop_reason="stop", tools=[], input_tokens=31, output_tokens=7)),
    ("python-openai", "chat-tools", Reply(**REPLY, tool_calls=[ToolCall("lookup", {"q": "x"})]),
     dict(OAI, streaming=False, stop_reason="tool_calls", tools=["lookup"])),
    # the SDK raises at the error event and the script exits before the stream's END_STREAM:
    # the call is the error, incomplete ("connection_closed"), as over HTTP/1.1
    ("python-openai", "chat-stream", Reply(**REPLY, stream_error=True),
     dict(provider="openai", streaming=True, http_status=200, stop_reason="error:server_error")),
    ("curl", "anthropic-stream", Reply(**REPLY),
     dict(ANT, streaming=True, stop_reason="end_turn", input_tokens=31, output_tokens=7)),
    ("curl", "openai-chat", Reply(**REPLY, tool_calls=[ToolCall("lookup", {"q": "y"})]),
     dict(OAI, streaming=False, stop_reason="tool_calls", tools=["lookup"], output_tokens=7)),
]


@pytest.mark.parametrize("kind,mode,reply,want", SDK_CASES,
                         ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(SDK_CASES)])
def test_official_client_over_http2_is_one_event(daemon, h2_api, kind, mode, reply, want):
    h2_api.script(reply)
    run = run_client(kind, h2_api, mode, http2=True)
    if reply.status == 200 and not reply.stream_error:
        run.check()
    ex = h2_api.wait_for(1)[0]
    assert ex.http_version == "2", "the client did not speak HTTP/2"
    evs = settled(daemon, h2_api, run.pid)
    assert len(evs) == 1, evs
    check_event(evs[0], h2_api, want, complete=not reply.stream_error)


def node_plan_events(daemon, api: FakeApi, plan: list, n: int) -> tuple[dict, list[dict]]:
    out = node_http2(api, plan, timeout=120)
    assert all(r["status"] == 200 for r in out["results"]), [r["status"] for r in out["results"]]
    evs = settled(daemon, api, out["pid"], n)
    return out, evs


def test_node_http2_client_stream_json_and_error(daemon, h2_api):
    h2_api.script(Reply(**REPLY), Reply(**REPLY, tool_calls=WEATHER), Reply(status=529))
    out = node_http2(h2_api, [{"path": "/v1/messages", "body": ANTHROPIC_STREAM},
                              {"path": "/v1/messages", "body": dict(ANTHROPIC_STREAM, stream=False)},
                              {"path": "/v1/messages", "body": dict(ANTHROPIC_STREAM, stream=False)}])
    assert [r["status"] for r in out["results"]] == [200, 200, 529]
    evs = sorted(settled(daemon, h2_api, out["pid"], 3), key=lambda e: e["ts"])
    assert len(evs) == 3, evs
    check_event(evs[0], h2_api, dict(ANT, streaming=True, stop_reason="end_turn", output_tokens=7, http_status=200))
    check_event(evs[1], h2_api, dict(ANT, streaming=False, stop_reason="tool_use", tools=["get_weather"]))
    check_event(evs[2], h2_api, dict(provider="anthropic", http_status=529, stop_reason="error:overloaded_error"))


def test_twenty_concurrent_streams_on_one_connection(daemon, h2_api):
    """20 streamed calls in flight at once on one connection, their DATA frames interleaved
    (each event a frame of its own, 20 ms apart): 20 events, each with its own stream's values."""
    h2_api.script(*[Reply(text="piece " * 8, events=8, event_delay=0.02, input_tokens=100 + i, output_tokens=200 + i)
                    for i in range(20)])
    out, evs = node_plan_events(daemon, h2_api, [{"path": "/v1/messages", "body": ANTHROPIC_STREAM, "parallel": 20}], 20)
    exs = [ex for ex in h2_api.wait_for(21) if ex.http_version == "2"]   # not the sentinel (HTTP/1.1)
    assert len(exs) == 20 and len({ex.conn for ex in exs}) == 1
    assert len(evs) == 20, len(evs)
    assert sorted((e["input_tokens"], e["output_tokens"]) for e in evs) == [(100 + i, 200 + i) for i in range(20)]
    assert all(e["http_version"] == "2" and e["streaming"] and not e["incomplete"] for e in evs)
    # they did overlap: every call started before the first one ended
    first_end = min(ex.ns_done for ex in exs)
    assert all(ex.ns_request_start < first_end for ex in exs)


def test_two_hundred_calls_on_one_connection_churning_hpack(daemon, h2_api):
    """One connection, 200 calls one after another; each request and each answer carries a
    header with a new ~120-byte value, indexed: both dynamic tables (4 KiB) evict all the time."""
    h2_api.script(*[Reply(text="ok", input_tokens=1000 + i, output_tokens=1 + i % 7) for i in range(200)])
    body = dict(ANTHROPIC_STREAM, stream=False)
    out, evs = node_plan_events(daemon, h2_api, [{"path": "/v1/messages", "body": body, "repeat": 200,
                                                  "churn": True}], 200)
    exs = [ex for ex in h2_api.wait_for(201, timeout=60) if ex.http_version == "2"]   # not the sentinel
    assert len(exs) == 200 and len({ex.conn for ex in exs}) == 1
    assert len(evs) == 200, len(evs)
    assert sorted((e["input_tokens"], e["output_tokens"]) for e in evs) == [(1000 + i, 1 + i % 7) for i in range(200)]
    assert all(e["http_version"] == "2" and e["http_status"] == 200 and not e["incomplete"] for e in evs)


def test_h2c_prior_knowledge_and_upgrade_are_calls(daemon, h2c_api):
    h2c_api.script(Reply(**REPLY), Reply(**REPLY, events=4))
    prior = run_client("curl", h2c_api, "anthropic", http2=True).check()
    # the daemon's log holds earlier tests' events too, and a port can be handed out again: only new ones
    earlier = {e["event_id"] for e in daemon.events()}
    t = subprocess.run([CURL, "-sS", "--http2", *post_args(h2c_api)[:4], h2c_api.url("/v1/messages")],
                       capture_output=True, text=True, timeout=30, check=True)
    assert t.stdout.startswith("event: message_start")
    exs = h2c_api.wait_for(2)
    assert [ex.http_version for ex in exs] == ["2", "2"]
    [ev] = settled(daemon, h2c_api, prior.pid)
    check_event(ev, h2c_api, dict(ANT, streaming=False, stop_reason="end_turn", input_tokens=31, output_tokens=7))
    assert ev["transport"] == "socket"   # h2c: a plain socket, not TLS
    upgraded = [e for e in daemon.events() if e["event_id"] not in earlier and e.get("server_port") == h2c_api.port
                and e["pid"] != prior.pid and e.get("streaming")]
    assert len(upgraded) == 1, upgraded
    check_event(upgraded[0], h2c_api, dict(ANT, streaming=True, stop_reason="end_turn", output_tokens=7))
