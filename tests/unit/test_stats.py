"""Nothing is dropped silently: every counter agtap keeps reaches GetStats, the metrics and `agtapctl stats`.

Each counter is set to its own distinct value at its source (the kernel's
counter slots as Tracer.counters() names them, CaptureStats, PipelineStats, the
controller's own, each sink's stats()), then looked for by value at the far
end: the D-Bus GetStats value, the Prometheus exposition, the CLI's lines.
A counter added to any of those structures and not exported fails here.
"""

from __future__ import annotations

import dataclasses
import itertools

from prometheus_client import generate_latest

from dbus_next import Variant

from agtap import metricnames as mn
from agtap.capture.chunk import CaptureStats
from agtap.capture.records import COUNTER_NAMES
from agtap.capture.tracer import Tracer
from agtap.config import Config
from agtap.ctl import plain, stat_lines
from agtap.pipeline import PipelineStats
from agtap.service.controller import Controller
from agtap.service.dbus_object import to_variant
from agtap.sinks.bodies import BodiesSink
from agtap.sinks.jsonl import JsonlSink
from agtap.sinks.prometheus import PrometheusSink
from tests.support.dbus.fakes import FakeTracer

# GetStats key of each CaptureStats counter (the rest keep their name)
CAPTURE_KEY = {"bytes": "capture_bytes"}


def test_every_kernel_counter_reaches_capture_stats():
    values = {name: 1000 + i for i, name in enumerate(COUNTER_NAMES)}
    t = Tracer(Config(), lambda item: None)
    t.counters = lambda: dict(values)
    st = t.stats()
    got = {getattr(st, f) for f in CaptureStats.COUNTERS}
    assert set(values.values()) <= got, {k: v for k, v in values.items() if v not in got}


def test_the_boringssl_counters_reach_capture_stats():
    from types import SimpleNamespace
    t = Tracer(Config(), lambda item: None)
    t._targets = SimpleNamespace(unprobed_processes=1007, unprobed_connections=1009, go_unprobed_processes=1013,
                                 go_unprobed_connections=1019, attached=[])
    st = t.stats()
    assert (st.boringssl_unprobed_processes, st.boringssl_unprobed_connections) == (1007, 1009)
    assert (st.go_unprobed_processes, st.go_unprobed_connections) == (1013, 1019)


def test_capture_stats_counters_are_all_its_int_fields():
    ints = [f.name for f in dataclasses.fields(CaptureStats) if f.type in ("int", int)]
    assert list(CaptureStats.COUNTERS) + list(CaptureStats.GAUGES) == ints


def _controller(tmp_path):
    cfg = Config(event_log=str(tmp_path / "events.jsonl"), bodies_dir=str(tmp_path / "bodies"))
    prom = PrometheusSink(None)
    sinks = [BodiesSink(cfg.bodies_dir, 10, 24, group=None), JsonlSink(cfg.event_log, 1, 3, group=None), prom]
    ctl = Controller(cfg, FakeTracer, sinks=sinks, poll_timeout_ms=10)
    prom.set_stats_source(stats=ctl.get_stats)
    return ctl, prom


def test_every_counter_reaches_getstats_metrics_and_the_cli(tmp_path):
    ctl, prom = _controller(tmp_path)
    try:
        ctl.start()
        n = itertools.count(101)
        want: dict[str, int] = {}                        # GetStats key -> the value set at the source
        cap = ctl.tracer._stats
        for f in CaptureStats.COUNTERS + CaptureStats.GAUGES:
            setattr(cap, f, next(n))
            want[CAPTURE_KEY.get(f, f)] = getattr(cap, f)
        ctl.inbox_dropped, ctl.inbox_dropped_bytes = next(n), next(n)
        want["lost_in_backlog"], want["lost_in_backlog_bytes"] = ctl.inbox_dropped, ctl.inbox_dropped_bytes
        want["lost_records"] += ctl.inbox_dropped       # kernel + backlog
        for f in dataclasses.fields(PipelineStats):
            setattr(ctl.pipeline.stats, f.name, next(n))
            want[f.name] = getattr(ctl.pipeline.stats, f.name)
        for attr in ("poll_errors", "sink_errors", "signals_dropped"):
            setattr(ctl, attr, next(n))
            want[attr] = getattr(ctl, attr)

        stats = ctl.get_stats()
        for k, v in want.items():
            assert stats.get(k) == v, k

        # every integer GetStats holds is a metric (or counted per call by the call metrics)
        ints = {k for k, v in stats.items() if isinstance(v, int) and not isinstance(v, bool)}
        assert ints - set(mn.PROM_STATS) - set(mn.STATS_PER_CALL) == set()
        assert set(mn.PROM_STATS) <= set(stats)          # and no metric reads a key that is not there

        text = generate_latest(prom.registry).decode()
        for key, (name, _kind, _help) in mn.PROM_STATS.items():
            metric = name if name.endswith("_total") or _kind == "gauge" else name + "_total"
            assert f"\n{metric} {float(stats[key])}\n" in text, (key, metric)

        # each sink's own counters: in GetStats "sinks" and in the sink families
        sinks = stats["sinks"]
        assert set(sinks) == {"bodies", "jsonl", "prometheus"}
        for sink in ctl.sinks:
            own = {k: v for k, v in sink.stats().items() if isinstance(v, int) and not isinstance(v, bool)}
            assert sinks[sink.name] == own and own
            for k, v in own.items():
                family = mn.PROM_SINK_GAUGE if k in mn.SINK_GAUGES else mn.PROM_SINK_COUNTER
                assert f'{family}{{sink="{sink.name}",stat="{k}"}} {float(v)}' in text, (sink.name, k)

        # D-Bus: GetStats' a{sv} (each Variant checks its value against its signature, "sinks" nested)
        Variant("a{sv}", {k: to_variant(v) for k, v in stats.items()})     # raises if a value does not fit
        back = plain({k: to_variant(v) for k, v in stats.items()})
        assert {k: back[k] for k in want} == want and back["sinks"] == sinks

        # agtapctl stats: a line per counter, with its value
        lines = stat_lines(back)
        for k, v in want.items():
            assert f"{k}: {v:,}" in lines, k
        for s, st in sinks.items():
            assert any(line.startswith(f"sinks {s}: ") for line in lines), s
    finally:
        ctl.shutdown()
