"""Prometheus sink: a real Prometheus scrapes it; promtool checks the exposition; cardinality stays bounded."""

from __future__ import annotations

import re
import time

import pytest

from agtap import metricnames as mn
from agtap.call import Call
from agtap.sinks.prometheus import PrometheusSink, parse_addr
from tests.support.obs.calls import llm_call, mcp_call
from tests.support.obs.prom import http_get, promtool_check_metrics, start_prometheus


@pytest.fixture
def sink():
    s = PrometheusSink("127.0.0.1:0")
    yield s
    s.close()


def sample(text: str, name: str, **labels: str) -> float | None:
    """Sum of the series of `name` whose labels include the given ones (None when no series matches)."""
    total = None
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        m = re.match(r"^([^{ ]+)(?:\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total = (total or 0.0) + float(m.group(3))
    return total


def test_real_prometheus_scrapes_requests_and_token_sums(sink, tmp_path):
    host, port = sink.address
    with start_prometheus(f"{host}:{port}", tmp_path / "prom") as prom:
        prom.wait_for_scrape()
        # 3 anthropic calls of 100 in / 20 out, 2 openai streamed calls of 50 in / 7 out, one MCP tool call
        for _ in range(3):
            sink.write(llm_call("anthropic", "claude-sonnet-4-5", input_tokens=100, output_tokens=20,
                                latency_ms=1500, cost_usd=0.0006))
        for _ in range(2):
            sink.write(llm_call("openai", "gpt-4o-mini", proc="node", input_tokens=50, output_tokens=7,
                                latency_ms=300, ttft_ms=120, streaming=True, stop_reason="stop"))
        sink.write(mcp_call("tools/call", "add"))
        sink.write(llm_call("anthropic", "claude-sonnet-4-5", input_tokens=None, output_tokens=None,
                            stop_reason="error:overloaded_error", http_status=529, error_type="overloaded_error"))

        # wait for a scrape taken after the last write (a scrape may land between writes)
        assert prom.wait_for_value('sum(agtap_requests_total)', 7) == 7
        assert prom.query_value('sum(agtap_requests_total{provider="anthropic",status="ok"})') == 3
        assert prom.query_value('sum(agtap_requests_total{provider="anthropic",status="error"})') == 1
        assert prom.query_value('sum(agtap_requests_total{provider="openai",streaming="true",process="node"})') == 2
        assert prom.query_value('sum(agtap_requests_total{kind="mcp_call"})') == 1
        # token sums, by hand: 3 x 100 = 300 input, 3 x 20 = 60 output; openai 2 x 50 = 100
        assert prom.query_value('sum(agtap_token_count_sum{provider="anthropic",token_type="input"})') == 300
        assert prom.query_value('sum(agtap_token_count_sum{provider="anthropic",token_type="output"})') == 60
        assert prom.query_value('sum(agtap_token_count_count{provider="anthropic",token_type="input"})') == 3
        assert prom.query_value('sum(agtap_token_count_sum{model="gpt-4o-mini",token_type="input"})') == 100
        # 100 tokens land in the le=256 bucket, not le=64
        assert prom.query_value('sum(agtap_token_count_bucket{provider="anthropic",token_type="input",le="64.0"})') == 0
        assert prom.query_value('sum(agtap_token_count_bucket{provider="anthropic",token_type="input",le="256.0"})') == 3
        # durations: 1.5 s each -> sum 4.5 over the 3 ok + 1.2345 for the error call
        assert prom.query_value('sum(agtap_request_duration_seconds_sum{model="claude-sonnet-4-5"})') == \
            pytest.approx(3 * 1.5 + 1.2345)
        assert prom.query_value('sum(agtap_request_duration_seconds_bucket{model="claude-sonnet-4-5",le="1.28"})') == 1  # the 1.2345 s error call
        assert prom.query_value('sum(agtap_request_duration_seconds_bucket{model="claude-sonnet-4-5",le="2.56"})') == 4
        # TTFT: only the two streamed calls, 0.12 s -> le=0.25 bucket
        assert prom.query_value('sum(agtap_time_to_first_token_seconds_count)') == 2
        assert prom.query_value('sum(agtap_time_to_first_token_seconds_bucket{le="0.1"})') == 0
        assert prom.query_value('sum(agtap_time_to_first_token_seconds_bucket{le="0.25"})') == 2
        assert prom.query_value('sum(agtap_cost_usd_total)') == pytest.approx(0.0018)
        assert prom.query_value('sum(agtap_request_bytes_sum)') == 6 * 812 + 120

        # the daemon's capture counters arrive through the stats source at scrape time
        sink.set_stats_source(stats=lambda: {"lost_records": 5, "cut_records": 2, "parse_errors": 4, "targets": [
            "/usr/lib/x86_64-linux-gnu/libssl.so.3", "/usr/bin/node"]})
        assert prom.wait_for_value("agtap_lost_records_total", 5) == 5
        assert prom.query_value("agtap_cut_records_total") == 2
        assert prom.query_value("agtap_parse_errors_total") == 4
        assert prom.query_value("agtap_targets") == 2
        assert prom.query_value('agtap_build_info{version!=""}') == 1


def test_exposition_passes_promtool(sink):
    for i in range(5):
        sink.write(llm_call("google", "gemini-2.5-flash", input_tokens=10 * i, output_tokens=i, ttft_ms=80,
                            streaming=True, cache_read=3))
    sink.write(mcp_call())
    sink.write(llm_call("google", platform="vertex_ai", model='we"ird\nmodel\\name', cost_usd=0.5))
    sink.set_capture_stats(lost=1, cut=0, parse_errors=3, targets=1)
    text = http_get(sink.url)
    r = promtool_check_metrics(text)
    assert r.returncode == 0 and r.stdout == b"" and r.stderr == b"", (r.stdout, r.stderr)
    t = text.decode()
    assert "# TYPE agtap_requests_total counter" in t
    assert "# TYPE agtap_request_duration_seconds histogram" in t
    assert sample(t, "agtap_parse_errors_total") == 3
    assert sample(t, "agtap_lost_records_total") == 1
    assert sample(t, "agtap_token_count_sum", provider="google", platform="gemini", token_type="cache_read") == 15
    assert sample(t, "agtap_token_count_sum", provider="google", platform="gemini", token_type="input") == 0 + 10 + 20 + 30 + 40
    # exactly the advisory buckets, plus +Inf
    les = re.findall(r'agtap_time_to_first_token_seconds_bucket\{[^}]*le="([^"]+)"', t)
    assert les == [repr(float(b)) for b in mn.TTFT_BUCKETS_S] + ["+Inf"]


def test_cardinality_250_models_limit_200(tmp_path):
    s = PrometheusSink(None, label_limit=200)
    try:
        for i in range(250):
            s.write(llm_call("openai", f"model-{i:03d}", input_tokens=1, output_tokens=1))
        from prometheus_client import generate_latest
        t = generate_latest(s.registry).decode()
        models = set(re.findall(r'agtap_request_duration_seconds_count\{[^}]*model="([^"]+)"', t))
        assert len(models) == 201
        assert "other" in models and "model-199" in models and "model-200" not in models
        assert sample(t, "agtap_request_duration_seconds_count", model="other") == 50
        assert sample(t, "agtap_label_overflow_total", label="model") == 50
        assert sample(t, "agtap_label_overflow_total", label="process") is None  # one process only
        assert s.stats()["label_overflow"] == 50 and s.stats()["models"] == 200
        # a model seen before the limit keeps its own series
        s.write(llm_call("openai", "model-007"))
        t = generate_latest(s.registry).decode()
        assert sample(t, "agtap_request_duration_seconds_count", model="model-007") == 2
        assert sample(t, "agtap_label_overflow_total", label="model") == 50
    finally:
        s.close()


def test_process_limit_and_unknown_values():
    s = PrometheusSink(label_limit=2)
    for p in ("a", "b", "c", "d"):
        s.write(llm_call(proc=p))
    c = llm_call(model=None)
    c.provider = "somethingelse"
    s.write(c)
    from prometheus_client import generate_latest
    t = generate_latest(s.registry).decode()
    assert sample(t, "agtap_requests_total", process="other") == 3   # c, d, and the 5th call's "python3"
    assert sample(t, "agtap_label_overflow_total", label="process") == 3
    assert sample(t, "agtap_request_duration_seconds_count", model="unknown", provider="other") == 1
    assert s.stats()["errors"] == 0


def test_write_never_raises_and_counts_errors():
    s = PrometheusSink()
    bad = llm_call()
    bad.latency_ms = "not a number"  # type: ignore[assignment]
    s.write(bad)
    assert s.stats()["errors"] == 1 and s.stats()["calls"] == 0
    s.write(llm_call())
    assert s.stats()["calls"] == 1


def test_addr_parsing():            # the status label's values: tests/unit/test_call.py
    assert parse_addr("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_addr(":9464") == ("0.0.0.0", 9464)
    assert parse_addr("[::1]:9464") == ("::1", 9464)
    with pytest.raises(ValueError):
        parse_addr("localhost")


def test_close_stops_the_server():
    s = PrometheusSink("127.0.0.1:0")
    url = s.url
    assert b"agtap_build_info" in http_get(url)
    t0 = time.monotonic()
    s.close()
    assert time.monotonic() - t0 < 2
    with pytest.raises(OSError):
        http_get(url, timeout=1)


def test_ipv6_loopback():
    s = PrometheusSink("[::1]:0")
    try:
        assert s.url.startswith("http://[::1]:")
        assert b"agtap_targets 0.0" in http_get(s.url)
    finally:
        s.close()


def test_is_a_sink():
    from agtap.sinks import Sink
    s: Sink = PrometheusSink()
    assert s.name == "prometheus" and isinstance(Call, type)


def test_stats_mapping_source_and_failure_keeps_last_values():
    from prometheus_client import generate_latest
    s = PrometheusSink()
    state = {"lost_records": 7, "cut_records": 1, "parse_errors": 2, "targets": ["libssl.so.3"], "calls": 9}
    s.set_stats_source(stats=lambda: state)     # e.g. Controller.get_stats
    t = generate_latest(s.registry).decode()
    assert (sample(t, "agtap_lost_records_total"), sample(t, "agtap_cut_records_total"),
            sample(t, "agtap_parse_errors_total"), sample(t, "agtap_targets")) == (7, 1, 2, 1)

    def broken():
        raise RuntimeError("tracer gone")
    s.set_stats_source(stats=broken)            # a counter must not fall back to 0 (a fake reset)
    t = generate_latest(s.registry).decode()
    assert sample(t, "agtap_lost_records_total") == 7 and sample(t, "agtap_targets") == 1


def test_daemon_controller_plugs_in_with_one_line():
    """The contract with agtap/service: Controller.get_stats has the keys the collector reads."""
    from prometheus_client import generate_latest

    from agtap.config import Config
    from agtap.service.controller import Controller
    s = PrometheusSink()
    ctl = Controller(Config(bus="none"), lambda *a: None, sinks=[s])
    assert {"lost_records", "cut_records", "parse_errors", "targets"} <= set(ctl.get_stats())
    s.set_stats_source(stats=ctl.get_stats)
    t = generate_latest(s.registry).decode()
    assert sample(t, "agtap_lost_records_total") == 0 and sample(t, "agtap_targets") == 0


def test_label_values_are_metricnames_own():
    """token_type and status take exactly the values metricnames defines, each counting its own field."""
    s = PrometheusSink(None)
    s.write(llm_call(input_tokens=1, output_tokens=2, cache_read=3, cache_creation=4))
    s.write(llm_call(http_status=500, stop_reason=None))
    inc = llm_call()
    inc.incomplete = True
    s.write(inc)
    tokens, statuses = {}, set()
    for m in s.registry.collect():
        for smp in m.samples:
            if m.name == mn.PROM_TOKEN_COUNT and smp.name.endswith("_sum"):
                tokens[smp.labels["token_type"]] = tokens.get(smp.labels["token_type"], 0) + smp.value
            if m.name == mn.PROM_REQUESTS and smp.name.endswith("_total"):
                statuses.add(smp.labels["status"])
    assert set(tokens) == set(mn.TOKEN_TYPES)
    assert tokens == {"input": 1 + 100 + 100, "output": 2 + 20 + 20, "cache_read": 3, "cache_creation": 4}
    assert statuses == set(mn.STATUS_VALUES) == {"ok", "error", "incomplete"}
