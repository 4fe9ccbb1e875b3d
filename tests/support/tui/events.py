"""Event dicts for the TUI tests, made the real way: agtap.call.Call(...).to_dict()."""

from __future__ import annotations

import datetime as dt
import uuid

from agtap.call import KIND_LLM, KIND_MCP, Call

BASE = dt.datetime(2026, 11, 26, 23, 37, 25, tzinfo=dt.timezone.utc)


def ts(seconds: float = 0.0, base: dt.datetime = BASE) -> str:
    return (base + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def llm(i: int = 0, *, model="claude-sonnet-4-5", proc="python3", pid=4242, provider="anthropic",
        input_tokens=1200, output_tokens=340, cache_read=800, latency_ms=2350.0, ttft_ms=410.0,
        stop_reason="end_turn", tools=(), streaming=True, unit="app.service", cost_usd=0.0087,
        at: float | None = None, base: dt.datetime = BASE, **kw) -> dict:
    c = Call(ts=ts(i if at is None else at, base), id=kw.pop("id", "msg_" + uuid.uuid4().hex[:24]),
             event_id=kw.pop("event_id", uuid.uuid4().hex), pid=pid, proc=proc,
             provider=provider, platform=kw.pop("platform", provider), server_address="api.anthropic.com", kind=KIND_LLM, model=model,
             input_tokens=input_tokens, output_tokens=output_tokens, cache_read_input_tokens=cache_read,
             latency_ms=latency_ms, ttft_ms=ttft_ms, stop_reason=stop_reason, tools=list(tools),
             streaming=streaming, unit=unit, cost_usd=cost_usd, transport="tls", **kw)
    return c.to_dict()


def mcp(i: int = 0, method="tools/call", proc="node", pid=777, tool="read_file") -> dict:
    c = Call(ts=ts(i), id=None, pid=pid, proc=proc, provider="mcp", platform="local", server_address="",
             kind=KIND_MCP, model=method, tools=[tool], latency_ms=12.5, transport="pipe",
             operation=method)
    return c.to_dict()
