"""The whole pipeline on the real kernel: official clients -> one event per call.

One daemon (`agtap` in the foreground, real BPF, real sinks) runs for the
module; each test runs an official client in a process of its own against
the local TLS fake API, scripted with known tokens, tools and stop reasons,
and checks the event the daemon logged for that process — and that there is
exactly one per call. Other processes on the machine may make calls too:
events are always selected by the client's pid.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support import API_KEYS, Reply, ToolCall, run_client

SETTLE = 0.7   # after the first event arrives, how long to wait to be sure no second one comes


def one_event(daemon, pid: int) -> dict:
    evs = daemon.events(pid, n=1)
    time.sleep(SETTLE)
    evs = daemon.events(pid)
    assert len(evs) == 1, evs
    return evs[0]


REPLY = dict(text="Hello there, friend of agtap.", input_tokens=30, output_tokens=4)

# (client kind, mode, reply, expected event fields). Values are what the Reply scripts
# and what each provider's documented wire format says they become.
CASES = [
    ("python-anthropic", "stream", Reply(**REPLY, cache_read_input_tokens=10, cache_creation_input_tokens=5),
     dict(provider="anthropic", streaming=True, input_tokens=30, output_tokens=4, cache_read_input_tokens=10,
          cache_creation_input_tokens=5, stop_reason="end_turn", tools=[])),
    ("python-anthropic", "nonstream", Reply(**REPLY),
     dict(provider="anthropic", streaming=False, input_tokens=30, output_tokens=4, stop_reason="end_turn", tools=[])),
    ("python-anthropic", "tools", Reply(**REPLY, tool_calls=[ToolCall("get_weather", {"city": "Paris"})]),
     dict(provider="anthropic", input_tokens=30, output_tokens=4, stop_reason="tool_use", tools=["get_weather"])),
    ("python-openai", "chat-stream", Reply(**REPLY, cache_read_input_tokens=10),
     dict(provider="openai", streaming=True, input_tokens=30, output_tokens=4, cache_read_input_tokens=10,
          stop_reason="stop", tools=[])),
    ("python-openai", "chat-tools", Reply(**REPLY, tool_calls=[ToolCall("lookup", {"q": "x"})]),
     dict(provider="openai", input_tokens=30, output_tokens=4, stop_reason="tool_calls", tools=["lookup"])),
    ("python-openai", "responses-stream", Reply(**REPLY),
     dict(provider="openai", streaming=True, input_tokens=30, output_tokens=4, stop_reason="completed")),
    ("python-openai", "responses", Reply(**REPLY),
     dict(provider="openai", streaming=False, input_tokens=30, output_tokens=4, stop_reason="completed")),
    ("python-gemini", "nonstream", Reply(**REPLY),
     dict(provider="gemini", streaming=False, input_tokens=30, output_tokens=4, stop_reason="STOP")),
    ("python-gemini", "stream", Reply(**REPLY),
     dict(provider="gemini", streaming=True, input_tokens=30, output_tokens=4, stop_reason="STOP")),
    ("node-anthropic", "stream", Reply(**REPLY),
     dict(provider="anthropic", streaming=True, input_tokens=30, output_tokens=4, stop_reason="end_turn")),
    ("node-openai", "chat-stream", Reply(**REPLY),
     dict(provider="openai", streaming=True, input_tokens=30, output_tokens=4, stop_reason="stop")),
    ("curl", "anthropic", Reply(**REPLY),
     dict(provider="anthropic", streaming=False, input_tokens=30, output_tokens=4, stop_reason="end_turn")),
]


@pytest.mark.parametrize("kind,mode,reply,want", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_official_client_call_is_one_event(daemon, fake_api, kind, mode, reply, want):
    fake_api.script(reply)
    run = run_client(kind, fake_api, mode).check()
    ex = fake_api.wait_for(1)[0]
    ev = one_event(daemon, run.pid)
    for k, v in want.items():
        assert ev[k] == v, (k, ev)
    if want["provider"] == "gemini":
        assert ev["model"] == ex.path.split("/models/")[1].split(":")[0]
    else:
        assert ev["model"] == ex.json()["model"]
    assert ev["kind"] == "llm_call" and ev["transport"] == "tls"
    assert ev["server_address"] == "127.0.0.1" and ev["server_port"] == fake_api.port
    assert ev["http_status"] == 200 and not ev["incomplete"]
    assert ev["latency_ms"] > 0
    if ev["streaming"]:
        assert 0 < ev["ttft_ms"] <= ev["latency_ms"]
    assert ev["body_path"] and Path(ev["body_path"]).is_file()


def test_rate_limit_error_is_an_error_event(daemon, fake_api):
    fake_api.script(Reply(status=429))
    run = run_client("python-anthropic", fake_api, "nonstream")   # the SDK reports RateLimitError
    assert fake_api.wait_for(1)[0].status == 429
    ev = one_event(daemon, run.pid)
    assert ev["http_status"] == 429
    assert ev["stop_reason"] == "error:rate_limit_error"


def test_time_to_first_token_follows_the_server(daemon, fake_api):
    # 300 ms before the first byte, then 5 text deltas 50 ms apart
    fake_api.script(Reply(**REPLY, delay=0.3, events=5, event_delay=0.05))
    run = run_client("python-anthropic", fake_api, "stream").check()
    ev = one_event(daemon, run.pid)
    assert 300 <= ev["ttft_ms"] < 1000, ev
    assert ev["latency_ms"] >= ev["ttft_ms"] + 4 * 50 * 0.9, ev


@pytest.mark.parametrize("kind", ["python-mcp", "node-mcp"])
def test_mcp_stdio_session_with_an_official_sdk(daemon, kind):
    # The Node SDK writes "jsonrpc" after "method" and "params": initialize, its first
    # message, has the member only near its end (issue 19: it was lost).
    run = run_client(kind).check()
    time.sleep(SETTLE)
    evs = daemon.events(timeout=5)
    # the server is a child of the client: its answers count for the client's conversation
    mine = [e for e in evs if e["kind"] == "mcp_call" and e["pid"] == run.pid]
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
