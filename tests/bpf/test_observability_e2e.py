"""Prometheus and OpenTelemetry fed by the real tracer while official clients make calls.

The daemon runs with --metrics-addr and --otel; a real Prometheus (Debian's)
scrapes it every second and an OTLP/HTTP receiver decodes what it exports.
Each client asks for a model name of its own, so the queries below select
exactly its calls whatever else runs on the machine.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.support.agtapd import Agtapd
from tests.support import Reply, run_client
from tests.support.obs.otlp import OtlpReceiver
from tests.support.obs.prom import free_port, start_prometheus


@pytest.fixture
def observed(tmp_path, _need_root):
    port = free_port()
    with OtlpReceiver() as rx:
        d = Agtapd(tmp_path, "--metrics-addr", f"127.0.0.1:{port}", "--otel", rx.endpoint)
        try:
            with start_prometheus(f"127.0.0.1:{port}", tmp_path / "prom") as prom:
                prom.wait_for_scrape()
                yield d, prom, rx
        finally:
            if d.proc.poll() is None:
                d.stop()


def test_prometheus_and_otlp_see_the_calls_official_clients_make(observed, fake_api):
    d, prom, rx = observed
    m_anth, m_oai = f"claude-obs-{uuid.uuid4().hex[:8]}", f"gpt-obs-{uuid.uuid4().hex[:8]}"
    fake_api.script(Reply(text="one two three", input_tokens=30, output_tokens=4, route="/v1/messages"),
                    Reply(text="one two three", input_tokens=30, output_tokens=4, route="/v1/messages"),
                    Reply(text="four", input_tokens=50, output_tokens=7, route="/chat/completions"))
    a = run_client("python-anthropic", fake_api, "stream", model=m_anth, repeat=2).check()
    o = run_client("node-openai", fake_api, "chat", model=m_oai).check()
    evs = d.events(a.pid, n=2) + d.events(o.pid, n=1)
    assert len(evs) == 3, evs

    # Prometheus, through PromQL on what it scraped (values worked out from the Replies)
    q = 'sum(agtap_token_count_sum{model="%s",token_type="%s"})'
    assert prom.wait_for_value(q % (m_anth, "input"), 60) == 60
    assert prom.wait_for_value(q % (m_anth, "output"), 8) == 8
    assert prom.wait_for_value(q % (m_oai, "input"), 50) == 50
    assert prom.wait_for_value(q % (m_oai, "output"), 7) == 7
    assert prom.wait_for_value(f'sum(agtap_request_duration_seconds_count{{model="{m_anth}",streaming="true"}})',
                               2) == 2
    assert prom.query_value('sum(agtap_requests_total{provider="anthropic",platform="local",status="ok"})') >= 2
    assert prom.query_value('sum(agtap_requests_total{provider="openai",process="node"})') >= 1
    assert prom.query_value("agtap_targets") >= 1

    # OpenTelemetry: one CLIENT span per call, at the captured times
    deadline = time.monotonic() + 30      # the batch span processor exports every few seconds
    while True:
        spans = [s for s in list(rx.spans) if s.attrs.get("gen_ai.request.model") in (m_anth, m_oai)]
        if len(spans) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert sorted(s.attrs["gen_ai.request.model"] for s in spans) == sorted([m_anth, m_anth, m_oai])
    for s in spans:
        assert s.kind == 3 and s.name == f"chat {s.attrs['gen_ai.request.model']}"
        model = s.attrs["gen_ai.request.model"]
        want_in, want_out = (30, 4) if model == m_anth else (50, 7)
        assert (s.attrs["gen_ai.usage.input_tokens"], s.attrs["gen_ai.usage.output_tokens"]) == (want_in, want_out)
        assert s.attrs["gen_ai.provider.name"] == ("anthropic" if model == m_anth else "openai")
        assert s.attrs["agtap.platform"] == "local" and s.attrs["gen_ai.response.id"]
        # span duration == the event's latency_ms (± 1 ms), for one of this model's events
        assert any(e["model"] == model and abs((s.end_ns - s.start_ns) / 1e6 - e["latency_ms"]) <= 1
                   for e in evs), (s, evs)
    # OpenTelemetry metrics, values from the Replies (cumulative: a series' last export counts)
    def series(metric: str, model: str, token_type: str | None = None) -> tuple[int, float] | None:
        pts = [p for p in rx.wait_for_metrics({metric}, timeout=0) if p.metric == metric
               and p.attrs.get("gen_ai.request.model") == model and p.attrs.get("gen_ai.token.type") == token_type]
        return (pts[-1].count, pts[-1].sum) if pts else None

    def seen() -> dict:
        dur, tok = "gen_ai.client.operation.duration", "gen_ai.client.token.usage"
        return {"calls": [(series(dur, m) or (0,))[0] for m in (m_anth, m_oai)],
                "tokens": [series(tok, m, t) for m in (m_anth, m_oai) for t in ("input", "output")]}
    want = {"calls": [2, 1], "tokens": [(2, 60), (2, 8), (1, 50), (1, 7)]}
    deadline = time.monotonic() + 60      # the periodic metric reader exports every few seconds
    while seen() != want and time.monotonic() < deadline:
        time.sleep(0.5)
    assert seen() == want
    json.dumps([s.attrs for s in spans])      # attributes are plain values
