"""OpenTelemetry sink: spans and metrics reach a real OTLP/HTTP receiver with the right names, attributes and times."""

from __future__ import annotations

import os
import socket

import pytest

from agtap import metricnames as mn
from agtap.sinks.otel import OtelSink, span_attributes, span_name, span_times
from tests.support.obs.calls import llm_call, mcp_call
from tests.support.obs.otlp import OtlpReceiver

SPAN_KIND_CLIENT = 3
STATUS_ERROR = 2
WALL = 1_790_000_000_123_456_789   # a fixed wall-clock start (2026-09-21), ns


@pytest.fixture
def rx():
    r = OtlpReceiver()
    yield r
    r.close()


def latest(points, metric, **attrs):
    """The newest cumulative point of `metric` whose attributes include `attrs`."""
    found = [p for p in points if p.metric == metric and all(p.attrs.get(k) == v for k, v in attrs.items())]
    assert found, f"no {metric} point with {attrs}: {[(p.metric, p.attrs) for p in points]}"
    return found[-1]


def test_spans_and_metrics_reach_the_collector(rx):
    sink = OtelSink(rx.endpoint, metric_interval_ms=60_000)
    calls = [
        llm_call("anthropic", "claude-sonnet-4-5", input_tokens=100, output_tokens=20, cache_read=30,
                 cache_creation=10, latency_ms=1234.567, wall_start_ns=WALL, tools=["get_weather"],
                 stop_reason="tool_use", cost_usd=0.0012),
        llm_call("openai", "gpt-4o-mini", proc="node", pid=99, input_tokens=50, output_tokens=7, latency_ms=300.25,
                 ttft_ms=120.5, streaming=True, stop_reason="stop", wall_start_ns=WALL + 5_000_000_000),
        llm_call("google", "gemini-2.5-flash", input_tokens=9, output_tokens=3, latency_ms=88.0,
                 stop_reason="STOP", wall_start_ns=WALL + 6_000_000_000),
        llm_call("anthropic", "claude-haiku-4-5", input_tokens=None, output_tokens=None, latency_ms=45.5,
                 stop_reason="error:overloaded_error", http_status=529, error_type="overloaded_error",
                 wall_start_ns=WALL + 7_000_000_000),
        mcp_call("tools/call", "add", latency_ms=12.5, jsonrpc_id="3", session_id=None, wall_start_ns=WALL + 8_000_000_000),
        mcp_call("tools/list", None, transport="socket", latency_ms=3.0, jsonrpc_id="1", session_id="sess-42",
                 wall_start_ns=WALL + 9_000_000_000),
    ]
    calls[1].http_version = "2"
    for c in calls:
        sink.write(c)
    assert sink.flush()
    spans = {s.name: s for s in rx.wait_for_spans(len(calls))}
    assert sorted(spans) == sorted(["chat claude-sonnet-4-5", "chat gpt-4o-mini", "generate_content gemini-2.5-flash",
                                    "chat claude-haiku-4-5", "tools/call add", "tools/list"])
    for c, s in zip(calls, [spans[span_name(c)] for c in calls]):
        assert s.kind == SPAN_KIND_CLIENT
        assert s.start_ns == c.wall_start_ns                    # the captured start, not export time
        assert abs((s.end_ns - s.start_ns) / 1e6 - c.latency_ms) <= 1.0
        assert s.resource["service.name"] == "agtap"
        assert s.resource["host.name"] == socket.gethostname()
        assert s.attrs["process.pid"] == c.pid and s.attrs["agtap.pid"] == c.pid
        assert s.attrs["process.executable.name"] == c.proc

    a = spans["chat claude-sonnet-4-5"].attrs
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "anthropic"
    assert a["gen_ai.request.model"] == "claude-sonnet-4-5"
    assert a["gen_ai.response.model"] == "claude-sonnet-4-5-20250929"
    assert a["gen_ai.response.id"] == calls[0].id and calls[0].id.startswith("msg_01")
    assert a["gen_ai.response.finish_reasons"] == ["tool_use"]
    assert a["gen_ai.usage.input_tokens"] == 140        # 100 + 30 cache read + 10 cache creation
    assert a["gen_ai.usage.output_tokens"] == 20
    assert a["gen_ai.usage.cache_read.input_tokens"] == 30
    assert a["gen_ai.usage.cache_creation.input_tokens"] == 10
    assert a["gen_ai.request.stream"] is False
    assert a["server.address"] == "api.anthropic.com" and a["server.port"] == 443
    assert a["agtap.tools"] == ["get_weather"] and a["agtap.kind"] == "llm_call"
    assert a["agtap.request_bytes"] == 812 and a["agtap.response_bytes"] == 2048
    assert a["agtap.cost_usd"] == pytest.approx(0.0012)
    assert "error.type" not in a and spans["chat claude-sonnet-4-5"].status_code != STATUS_ERROR

    o = spans["chat gpt-4o-mini"].attrs
    assert o["gen_ai.usage.input_tokens"] == 50 and o["agtap.ttft_ms"] == 120.5
    assert o["gen_ai.request.stream"] is True and o["agtap.streaming"] is True and o["agtap.process"] == "node"
    assert (o["network.protocol.name"], o["network.protocol.version"]) == ("http", "2")
    assert "network.protocol.version" not in a    # not known (not set by the test): not sent
    assert spans["generate_content gemini-2.5-flash"].attrs["gen_ai.provider.name"] == "gcp.gemini"

    e = spans["chat claude-haiku-4-5"]
    assert e.status_code == STATUS_ERROR and e.status_message == "error:overloaded_error"
    assert e.attrs["error.type"] == "overloaded_error" and "gen_ai.response.finish_reasons" not in e.attrs

    m = spans["tools/call add"].attrs
    assert m["mcp.method.name"] == "tools/call" and m["gen_ai.tool.name"] == "add"
    assert m["gen_ai.operation.name"] == "execute_tool"
    assert m["jsonrpc.request.id"] == "3" and m["network.transport"] == "pipe"
    assert "server.address" not in m and "gen_ai.provider.name" not in m
    t = spans["tools/list"].attrs
    assert t["mcp.session.id"] == "sess-42" and t["network.transport"] == "tcp" and t["server.port"] == 8000

    points = rx.wait_for_metrics({mn.OTEL_DURATION, mn.OTEL_TOKEN_USAGE, mn.OTEL_TTFT, mn.OTEL_MCP_DURATION})
    d = latest(points, mn.OTEL_DURATION, **{"gen_ai.request.model": "claude-sonnet-4-5"})
    assert d.unit == "s" and d.count == 1 and d.sum == pytest.approx(1.234567)
    assert d.bounds == list(mn.DURATION_BUCKETS_S)
    assert d.bucket_counts[d.bounds.index(1.28)] == 1      # (0.64, 1.28]
    assert d.attrs["gen_ai.provider.name"] == "anthropic" and d.attrs["gen_ai.operation.name"] == "chat"
    err = latest(points, mn.OTEL_DURATION, **{"gen_ai.request.model": "claude-haiku-4-5"})
    assert err.attrs["error.type"] == "overloaded_error"
    tin = latest(points, mn.OTEL_TOKEN_USAGE, **{"gen_ai.request.model": "claude-sonnet-4-5", "gen_ai.token.type": "input"})
    tout = latest(points, mn.OTEL_TOKEN_USAGE, **{"gen_ai.request.model": "claude-sonnet-4-5", "gen_ai.token.type": "output"})
    assert (tin.sum, tout.sum) == (140, 20) and tin.bounds == list(mn.TOKEN_BUCKETS)
    ttft = latest(points, mn.OTEL_TTFT, **{"gen_ai.request.model": "gpt-4o-mini"})
    assert ttft.count == 1 and ttft.sum == pytest.approx(0.1205) and ttft.bounds == list(mn.TTFT_BUCKETS_S)
    assert ttft.bucket_counts[ttft.bounds.index(0.25)] == 1   # (0.1, 0.25]
    assert {p.attrs.get("gen_ai.request.model") for p in points if p.metric == mn.OTEL_TTFT} == {"gpt-4o-mini"}
    mcpd = latest(points, mn.OTEL_MCP_DURATION, **{"gen_ai.tool.name": "add"})
    assert mcpd.sum == pytest.approx(0.0125) and mcpd.attrs["mcp.method.name"] == "tools/call"

    st = sink.stats()
    assert st["otel_spans"] == 6 and st["otel_exported_spans"] == 6
    assert st["otel_dropped_spans"] == 0 and st["otel_export_failures"] == 0
    sink.close()
    assert {r[0] for r in rx.requests} == {"/v1/traces", "/v1/metrics"}


def test_env_endpoint_and_headers_are_honoured(rx, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rx.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=agtap-test")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=ci")
    sink = OtelSink(None)
    assert sink.traces_url == rx.endpoint + "/v1/traces"
    sink.write(llm_call())
    sink.flush()
    spans = rx.wait_for_spans(1)
    assert len(spans) == 1 and spans[0].resource["deployment.environment"] == "ci"
    assert rx.requests[0][2]["x-tenant"] == "agtap-test"
    sink.close()


def test_collector_rejecting_counts_failures(rx):
    rx.status = 400                                 # not retryable: the batch is lost at once
    sink = OtelSink(rx.endpoint, timeout=2)
    for _ in range(10):
        sink.write(llm_call())
    sink.flush()
    st = sink.stats()
    assert st["otel_export_failures"] >= 1 and st["otel_dropped_spans"] == 10 and st["otel_exported_spans"] == 0
    rx.status = 200
    sink.write(llm_call())
    sink.flush()
    assert sink.stats()["otel_exported_spans"] == 1
    sink.close()


def test_span_times_fallbacks():
    c = llm_call(latency_ms=250.0, wall_start_ns=WALL)
    assert span_times(c) == (WALL, WALL + (c.end_ns - c.start_ns))
    c.start_ns = c.end_ns = 0                       # no monotonic times: latency_ms
    assert span_times(c) == (WALL, WALL + 250_000_000)
    c.wall_start_ns = 0                             # no wall start: the ts field (microseconds)
    start, end = span_times(c)
    assert abs(start - WALL) <= 1000 and start % 1000 == 0 and end - start == 250_000_000


def test_names_and_attributes_without_a_collector():
    assert span_name(mcp_call("prompts/get", "summarise")) == "prompts/get summarise"
    assert span_name(mcp_call("initialize", None)) == "initialize"
    v = llm_call("google", "gemini-2.5-pro", platform="vertex_ai")
    assert span_name(v) == "generate_content gemini-2.5-pro"
    assert span_attributes(v)["gen_ai.provider.name"] == "gcp.vertex_ai"
    assert span_attributes(v)["agtap.platform"] == "vertex_ai"
    # the semantic conventions' name by where it was served; the family's where they name none
    for provider, platform, want in [("google", "gemini", "gcp.gemini"), ("anthropic", "vertex_ai", "gcp.vertex_ai"),
                                     ("openai", "groq", "groq"), ("anthropic", "anthropic", "anthropic")]:
        assert span_attributes(llm_call(provider, platform=platform))["gen_ai.provider.name"] == want
    c = llm_call("openai", "llama", platform="groq")
    for platform, want in [("openrouter", "openai"), ("local", "openai"), ("other", "openai"), ("xai", "x_ai"),
                           ("mistral", "mistral_ai"), ("deepseek", "deepseek")]:
        c.platform = platform
        assert span_attributes(c)["gen_ai.provider.name"] == want, platform
    c = llm_call("google", "gemini-2.5-pro", platform="gemini")
    c.platform = "local"
    assert span_attributes(c)["gen_ai.provider.name"] == "gcp.gen_ai"
    r = llm_call("openai", "gpt-5")
    r.operation = "responses"
    assert span_name(r) == "chat gpt-5"
    a = span_attributes(llm_call(stop_reason="error:", http_status=500))
    assert a["error.type"] == "_OTHER"
    assert all(v is not None for v in span_attributes(mcp_call()).values())


def test_missing_opentelemetry_gives_a_clear_error(tmp_path):
    import subprocess
    import sys
    code = ("import sys; sys.modules['opentelemetry'] = None\n"
            "from agtap.sinks.otel import OtelSink\n"
            "try:\n    OtelSink('http://127.0.0.1:4318')\nexcept RuntimeError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert r.returncode == 0, r.stderr
    assert "pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http" in r.stdout
