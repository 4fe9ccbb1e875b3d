"""The whole pipeline on the real kernel: official clients -> one event per call.

One daemon (`agtap` in the foreground, real BPF, real sinks) runs for the
module; each test runs an official client in a process of its own against
the local TLS fake API, scripted with known tokens, tools and stop reasons,
and checks the event the daemon logged for that process — and that there is
exactly one per call. Other processes on the machine may make calls too:
events are always selected by the client's pid.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support import API_KEYS, Reply, ToolCall, run_client

SERVED = "fake-served-model-2"   # the model the fake API says answered: never the one asked for


def settled_events(daemon, fake_api, pid: int, n: int = 1) -> list[dict]:
    """`pid`'s events once there are n and nothing more can come for what it did.

    After the client has exited, a sentinel call (curl, another process) is made and its event
    awaited: the daemon handles the ring buffer in order, so by then it has handled every record
    of the client, its connections' closes and its exit, and any late or duplicate event they
    could cause is already in the log."""
    daemon.events(pid, n=n, timeout=30)
    sentinel = run_client("curl", fake_api, "anthropic").check()
    assert daemon.events(sentinel.pid, n=1, timeout=30), "the sentinel call has no event"
    return daemon.events(pid)


def one_event(daemon, fake_api, pid: int) -> dict:
    evs = settled_events(daemon, fake_api, pid)
    assert len(evs) == 1, evs
    return evs[0]


REPLY = dict(text="Hello there, friend of agtap.", input_tokens=30, output_tokens=4, model=SERVED,
             cache_read_input_tokens=10)
# provider: the API family; platform: the fake API listens on 127.0.0.1, so "local"
ANTHROPIC = dict(provider="anthropic", platform="local", cache_read_input_tokens=10, cache_creation_input_tokens=5)
# OpenAI and Gemini report cached input (prompt_tokens_details.cached_tokens,
# input_tokens_details.cached_tokens, cachedContentTokenCount) but no cache writes.
OPENAI = dict(provider="openai", platform="local", cache_read_input_tokens=10, cache_creation_input_tokens=None)
GEMINI = dict(provider="google", platform="local", cache_read_input_tokens=10, cache_creation_input_tokens=None)
# `id` is the response's own id as the fake API's shapes write it (tests/support/shapes_*.py)
RESPONSE_ID = {"anthropic": r"msg_fake\d{6}", "openai": r"(chatcmpl-|resp_)fake\d{6}", "google": r"fakeresp\d{6}"}
GET_WEATHER = [ToolCall("get_weather", {"city": "Paris"})]

# (client kind, mode, reply, expected event fields): streaming, tools and every token count for
# every client. Values are what the Reply scripts and what each provider's documented wire
# format says they become.
CASES = [
    ("python-anthropic", "stream", Reply(**REPLY, cache_creation_input_tokens=5),
     dict(ANTHROPIC, streaming=True, stop_reason="end_turn", tools=[])),
    ("python-anthropic", "nonstream", Reply(**REPLY, cache_creation_input_tokens=5),
     dict(ANTHROPIC, streaming=False, stop_reason="end_turn", tools=[])),
    ("python-anthropic", "tools", Reply(**REPLY, cache_creation_input_tokens=5, tool_calls=GET_WEATHER),
     dict(ANTHROPIC, streaming=False, stop_reason="tool_use", tools=["get_weather"])),
    ("python-openai", "chat-stream", Reply(**REPLY),
     dict(OPENAI, streaming=True, stop_reason="stop", tools=[])),
    ("python-openai", "chat-tools", Reply(**REPLY, tool_calls=[ToolCall("lookup", {"q": "x"})]),
     dict(OPENAI, streaming=False, stop_reason="tool_calls", tools=["lookup"])),
    ("python-openai", "responses-stream", Reply(**REPLY),
     dict(OPENAI, streaming=True, stop_reason="completed", tools=[])),
    ("python-openai", "responses", Reply(**REPLY),
     dict(OPENAI, streaming=False, stop_reason="completed", tools=[])),
    ("python-gemini", "nonstream", Reply(**REPLY),
     dict(GEMINI, streaming=False, stop_reason="STOP", tools=[])),
    ("python-gemini", "stream", Reply(**REPLY),
     dict(GEMINI, streaming=True, stop_reason="STOP", tools=[])),
    ("node-anthropic", "stream", Reply(**REPLY, cache_creation_input_tokens=5),
     dict(ANTHROPIC, streaming=True, stop_reason="end_turn", tools=[])),
    ("node-openai", "chat-stream", Reply(**REPLY),
     dict(OPENAI, streaming=True, stop_reason="stop", tools=[])),
    ("curl", "anthropic", Reply(**REPLY, cache_creation_input_tokens=5),
     dict(ANTHROPIC, streaming=False, stop_reason="end_turn", tools=[])),
]


@pytest.mark.parametrize("kind,mode,reply,want", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_official_client_call_is_one_event(daemon, fake_api, kind, mode, reply, want):
    fake_api.script(reply)
    run = run_client(kind, fake_api, mode).check()
    ex = fake_api.wait_for(1)[0]
    ev = one_event(daemon, fake_api, run.pid)
    for k, v in want.items():
        assert ev[k] == v, (k, ev)
    assert ev["input_tokens"] == 30 and ev["output_tokens"] == 4, ev
    # the model asked for (request path or body) and the one that answered, each in its own field
    asked = ex.path.split("/models/")[1].split(":")[0] if want["provider"] == "google" else ex.json()["model"]
    assert asked != SERVED
    assert ev["model"] == asked and ev["response_model"] == SERVED, ev
    assert ev["kind"] == "llm_call" and ev["transport"] == "tls"
    assert ev["server_address"] == "127.0.0.1" and ev["server_port"] == fake_api.port
    assert ev["http_status"] == 200 and not ev["incomplete"]
    assert ev["latency_ms"] > 0
    if ev["streaming"]:
        assert 0 < ev["ttft_ms"] <= ev["latency_ms"]
    assert ev["body_path"] and Path(ev["body_path"]).is_file()
    # the API's id in `id` (and its alias), agtap's own in `event_id`, which names the body file
    assert re.fullmatch(RESPONSE_ID[want["provider"]], ev["id"]) and ev["response_id"] == ev["id"], ev
    assert Path(ev["body_path"]).name == ev["event_id"] + ".json"


def test_rate_limit_error_is_an_error_event(daemon, fake_api):
    fake_api.script(Reply(status=429))
    run = run_client("python-anthropic", fake_api, "nonstream")   # the SDK reports RateLimitError
    assert fake_api.wait_for(1)[0].status == 429
    ev = one_event(daemon, fake_api, run.pid)
    assert ev["http_status"] == 429
    assert ev["stop_reason"] == "error:rate_limit_error"


def test_time_to_first_token_follows_the_server(daemon, fake_api):
    # 300 ms before the first byte, then 5 text deltas 50 ms apart
    fake_api.script(Reply(**REPLY, delay=0.3, events=5, event_delay=0.05))
    run = run_client("python-anthropic", fake_api, "stream").check()
    ev = one_event(daemon, fake_api, run.pid)
    assert 300 <= ev["ttft_ms"] < 1000, ev
    assert ev["latency_ms"] >= ev["ttft_ms"] + 4 * 50 * 0.9, ev


@pytest.mark.parametrize("kind", ["python-mcp", "node-mcp"])
def test_mcp_stdio_session_with_an_official_sdk(daemon, fake_api, kind):
    # The Node SDK writes "jsonrpc" after "method" and "params": initialize, its first
    # message, has the member only near its end (issue 19: it was lost).
    run = run_client(kind).check()
    # the server is a child of the client: its answers count for the client's conversation
    mine = [e for e in settled_events(daemon, fake_api, run.pid, n=4) if e["kind"] == "mcp_call"]
    methods = [e["model"] for e in mine]
    for m in ("initialize", "notifications/initialized", "tools/list", "tools/call"):
        assert methods.count(m) == 1, methods
    call = next(e for e in mine if e["model"] == "tools/call")
    assert call["tools"] == ["add"]
    # anyio gives the Python child plain pipes; libuv (Node) gives it socketpairs
    assert call["provider"] == "mcp" and call["transport"] == ("pipe" if kind == "python-mcp" else "socket")
    assert not call["incomplete"] and call["latency_ms"] >= 0
    assert not call["stop_reason"] or not call["stop_reason"].startswith("error")


def test_no_api_key_reaches_the_log_or_the_bodies(daemon):
    """Runs last in this module: every client above sent its own fake key."""
    files = [p for p in (daemon.dir / "log").rglob("*") if p.is_file()]
    files += [p for p in (daemon.dir / "bodies").rglob("*") if p.is_file()]
    assert files, "the daemon wrote nothing"
    blob = b"".join(p.read_bytes() for p in files)
    for kind, key in API_KEYS.items():
        assert key.encode() not in blob, f"{kind}'s key leaked"
    assert b"[REDACTED]" in blob
