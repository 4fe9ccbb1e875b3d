"""Calls made by the real pipeline (crafted chunks -> wire -> providers) into the OTel and Prometheus sinks."""

from __future__ import annotations

import json
import re

import pytest
from prometheus_client import generate_latest

from agtap import metricnames as mn
from agtap.capture.chunk import Transport
from agtap.sinks.otel import OtelSink
from agtap.sinks.prometheus import PrometheusSink
from tests.support.harness import WALL_NS, Run, end_chunked, fixture, request, response, stream_sse
from tests.support.obs.otlp import OtlpReceiver

REQ = {"model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": True,
       "messages": [{"role": "user", "content": "What's the weather like in San Francisco?"}],
       "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}]}


def line(obj) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def pipeline_calls() -> list:
    calls = []
    # Anthropic streaming tool use: first byte t=0, first token t=140 ms, last byte t=300 ms
    r = Run()
    r.out(request("/v1/messages", REQ), 0)
    stream_sse(r, fixture("anthropic_stream_tool.sse"), 100)
    end_chunked(r, 300)
    calls += r.calls
    # Anthropic 429 at t=20 ms (its own connection, starting 1 s later)
    r = Run(conn="tls:100:7f00bb")
    r.out(request("/v1/messages", REQ), 1000)
    r.inn(response(fixture("anthropic_error_429.json"), status=429), 1020)
    calls += r.calls
    # MCP over stdio: tools/call answered 20 ms later, and a tool error
    r = Run(conn="ipc:81234", transport=Transport.PIPE)
    r.out(line({"jsonrpc": "2.0", "id": "call-2", "method": "tools/call",
                "params": {"name": "get_forecast", "arguments": {"city": "Oslo"}}}), 2000, pid=100, proc="claude")
    r.inn(line({"jsonrpc": "2.0", "id": "call-2", "result": {"content": [], "isError": False}}), 2020,
          pid=200, proc="weather-mcp")
    r.out(line({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "get_alerts"}}), 2040,
          pid=100, proc="claude")
    r.inn(line({"jsonrpc": "2.0", "id": 4, "result": {"content": [], "isError": True}}), 2045,
          pid=200, proc="weather-mcp")
    calls += r.calls
    assert [c.model for c in calls] == ["claude-sonnet-4-5", "claude-sonnet-4-5", "tools/call", "tools/call"]
    return calls


def test_pipeline_calls_become_spans_and_metrics():
    calls = pipeline_calls()
    with OtlpReceiver() as rx:
        sink = OtelSink(rx.endpoint, metric_interval_ms=60_000)
        for c in calls:
            sink.write(c)
        sink.flush()
        spans = rx.wait_for_spans(4)
        points = rx.wait_for_metrics({mn.OTEL_DURATION, mn.OTEL_TOKEN_USAGE, mn.OTEL_TTFT, mn.OTEL_MCP_DURATION})
        sink.close()
    by_start = sorted(spans, key=lambda s: s.start_ns)
    ok, err, tool, tool_err = by_start
    # times: the captured wall clock of the first request byte, plus the measured latency
    assert ok.start_ns == WALL_NS and ok.end_ns - ok.start_ns == 300_000_000
    assert err.start_ns == WALL_NS + 1_000_000_000 and err.end_ns - err.start_ns == 20_000_000
    assert tool.start_ns == WALL_NS + 2_000_000_000 and tool.end_ns - tool.start_ns == 20_000_000
    assert ok.name == "chat claude-sonnet-4-5" and tool.name == "tools/call get_forecast"
    a = ok.attrs
    # the fixture's usage: 472 input + 50 cache read + 100 cache creation = 622 input per the semconv
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (622, 89)
    assert (a["gen_ai.usage.cache_read.input_tokens"], a["gen_ai.usage.cache_creation.input_tokens"]) == (50, 100)
    assert a["gen_ai.response.model"] == "claude-sonnet-4-5-20250929"
    assert a["gen_ai.response.id"] == "msg_014p7gG3wDgGV9EUtLvnow3U"
    assert a["gen_ai.response.finish_reasons"] == ["tool_use"] and a["agtap.tools"] == ["get_weather"]
    assert a["agtap.ttft_ms"] == 140.0 and a["gen_ai.request.stream"] is True
    assert a["process.executable.name"] == "python3.11" and a["agtap.unit"] == "agent.service"
    assert err.status_code == 2 and err.attrs["error.type"] == "rate_limit_error"
    assert err.attrs["http.response.status_code"] == 429
    assert tool.attrs["jsonrpc.request.id"] == "call-2" and tool.attrs["network.transport"] == "pipe"
    assert tool.status_code != 2 and "error.type" not in tool.attrs
    assert tool_err.status_code == 2 and tool_err.attrs["error.type"] == "tool_error"
    assert tool_err.attrs["gen_ai.tool.name"] == "get_alerts"

    ttft = [p for p in points if p.metric == mn.OTEL_TTFT]
    assert len(ttft) == 1 and ttft[0].sum == pytest.approx(0.140)
    tokens = {p.attrs["gen_ai.token.type"]: p.sum for p in points if p.metric == mn.OTEL_TOKEN_USAGE}
    assert tokens == {"input": 622, "output": 89}
    mcp = {p.attrs["gen_ai.tool.name"]: p for p in points if p.metric == mn.OTEL_MCP_DURATION}
    assert mcp["get_alerts"].attrs["error.type"] == "tool_error" and mcp["get_forecast"].sum == pytest.approx(0.02)


def test_pipeline_calls_in_prometheus():
    sink = PrometheusSink()
    for c in pipeline_calls():
        sink.write(c)
    t = generate_latest(sink.registry).decode()

    def val(pattern: str) -> float:
        m = re.search("^" + pattern + r" (\S+)$", t, re.M)
        assert m, pattern
        return float(m.group(1))

    assert val(r'agtap_requests_total\{kind="llm_call",platform="anthropic",process="python3",provider="anthropic",status="ok",'
               r'streaming="true"\}') == 1
    assert val(r'agtap_requests_total\{kind="llm_call",platform="anthropic",process="python3",provider="anthropic",status="error",'
               r'streaming="true"\}') == 1
    assert val(r'agtap_requests_total\{kind="mcp_call",platform="local",process="claude",provider="mcp",status="error",'
               r'streaming="false"\}') == 1
    assert val(r'agtap_token_count_sum\{[^}]*token_type="cache_creation"\}') == 100
    assert val(r'agtap_time_to_first_token_seconds_sum\{[^}]*\}') == pytest.approx(0.14)
    assert val(r'agtap_request_duration_seconds_sum\{kind="mcp_call",model="tools/call"[^}]*\}') == \
        pytest.approx(0.025)
    assert val(r'agtap_cost_usd_total\{[^}]*\}') == pytest.approx((472 * 3 + 89 * 15 + 50 * 0.30 + 100 * 3.75) / 1e6)
