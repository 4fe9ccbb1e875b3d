"""The Controller on its own: no bus, no loop (schedule runs callbacks inline), FakeTracer, real sinks."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from agtap.capture.connid import ConnId
from agtap.config import Config
from agtap.service.controller import Controller, Failed, InvalidArgument, NotFound, validate_filter
from agtap.sinks.bodies import BodiesSink
from agtap.sinks.jsonl import JsonlSink
from tests.support.dbus.fakes import FakeTracer, anthropic_exchange


@pytest.fixture
def ctl(tmp_path):
    cfg = Config(event_log=str(tmp_path / "events.jsonl"), bodies_dir=str(tmp_path / "bodies"), comms=["python3"])
    sinks = [BodiesSink(cfg.bodies_dir, 10, 24, group=None), JsonlSink(cfg.event_log, 1, 3, group=None)]
    c = Controller(cfg, FakeTracer, sinks=sinks, poll_timeout_ms=10)
    yield c
    c.shutdown()


def run_calls(c: Controller, n: int, start: int = 0) -> None:
    items = []
    for i in range(n):
        items += anthropic_exchange(conn=ConnId.tls(1, start + i))
    c.tracer.feed(items)
    deadline = time.monotonic() + 5
    while c.calls < start + n and time.monotonic() < deadline:
        time.sleep(0.01)


def test_start_capture_stats_stop(ctl):
    ctl.start()
    assert ctl.capturing and ctl.tracer.filters == ([], ["python3"])
    seen = []
    unsubscribe = ctl.subscribe(seen.append)
    run_calls(ctl, 3)
    assert ctl.calls == 3 and len(seen) == 3 and seen[0]["provider"] == "anthropic"
    st = ctl.get_stats()
    assert st["calls_by_provider"] == {"anthropic": 3} and st["input_tokens"] == 36 and st["output_tokens"] == 102
    assert st["chunks"] == 6 and st["targets"] == ctl.targets and len(st["targets"]) == 2
    assert ctl.status_line() == "capturing · 2 targets · probes per process, 0 watched · 3 calls · 0 lost · 0 late attach"
    unsubscribe()
    tracer = ctl.tracer
    ctl.stop()
    assert tracer.stopped and not ctl.capturing and ctl.targets == []
    assert ctl.get_stats()["chunks"] == 6                     # counts survive the tracer
    ctl.start()                                               # a fresh tracer
    assert ctl.capturing and ctl.tracer is not tracer


def test_start_failure_is_failed_with_the_fix(ctl, monkeypatch):
    monkeypatch.setattr(FakeTracer, "fail_start", "no headers")
    with pytest.raises(Failed, match="no headers.*fix: apt-get install"):
        ctl.start()
    assert not ctl.capturing


def test_recent_calls_newest_last_and_bounded(tmp_path):
    cfg = Config(event_log="", bodies_dir=str(tmp_path))
    c = Controller(cfg, FakeTracer, recent_max=4, poll_timeout_ms=10)
    c.start()
    run_calls(c, 6)
    recent = [json.loads(x) for x in c.recent_calls(100)]
    assert len(recent) == 4 and len(c._ids) == 4
    assert [json.loads(x)["event_id"] for x in c.recent_calls(2)] == [e["event_id"] for e in recent[-2:]]
    assert c.recent_calls(0) == []
    with pytest.raises(InvalidArgument):
        c.recent_calls(-1)
    c.shutdown()


@pytest.mark.parametrize("pids,comms", [([0], []), ([-1], []), ([True], []), ([2**31], []), ([], [""]),
                                        ([], ["x" * 16]), ([], ["é" * 8]), ([], ["a\nb"]), ([], [3])])
def test_filter_validation(pids, comms):
    with pytest.raises(InvalidArgument):
        validate_filter(pids, comms)


def test_filter_set_and_clear(ctl):
    assert validate_filter([5, 5, 7], ["node", "node"]) == ([5, 7], ["node"])
    ctl.start()
    ctl.set_filter([42], ["x" * 15])
    assert ctl.tracer.filters == ([42], ["x" * 15]) and (ctl.pids, ctl.comms) == ([42], ["x" * 15])
    with pytest.raises(InvalidArgument):
        ctl.set_filter([1], ["bad\x1b"])
    assert ctl.pids == [42]                                  # unchanged by the bad call
    ctl.clear_filter()
    assert ctl.tracer.filters == ([], [])


def test_call_bodies_by_id_never_by_path(ctl, tmp_path):
    ctl.start()
    run_calls(ctl, 1)
    ev = json.loads(ctl.recent_calls(1)[0])
    doc = json.loads(ctl.call_bodies(ev["event_id"]))
    assert doc and "sk-ant-api03" not in json.dumps(doc)
    # the D-Bus event carries the API's id in `id`, agtap's in `event_id` (the body's name)
    assert (doc["event_id"], doc["id"], doc["provider"], doc["platform"]) == \
        (ev["event_id"], ev["id"], ev["provider"], ev["platform"])
    assert ev["id"] != ev["event_id"] and ev["body_path"].endswith(ev["event_id"] + ".json")
    ctl._ids.clear()                                          # found on disk too, by name
    assert json.loads(ctl.call_bodies(ev["event_id"])) == doc
    for bad in ("../../../etc/passwd", "/etc/shadow", ev["event_id"].upper(), ev["event_id"] + "/..", "", "a" * 31):
        with pytest.raises(InvalidArgument):
            ctl.call_bodies(bad)
    with pytest.raises(NotFound):
        ctl.call_bodies("0" * 32)
    # A body_path pointing outside the bodies dir is refused.
    outside = tmp_path / "outside.json"
    outside.write_text("{}")
    ctl._ids["1" * 32] = str(outside)
    with pytest.raises(NotFound):
        ctl.call_bodies("1" * 32)


def test_clean_removes_bodies_and_logs(ctl, tmp_path):
    ctl.start()
    run_calls(ctl, 2)
    log = Path(ctl.config.event_log)
    Path(f"{log}.1").write_text("old\n")
    Path(f"{log}.2").write_text("older\n")
    assert log.stat().st_size > 0
    removed = ctl.clean()
    assert removed["body_files"] == 2 and removed["log_files"] == 2
    assert log.stat().st_size == 0 and not Path(f"{log}.1").exists()
    assert not any(files for _, _, files in os.walk(ctl.config.bodies_dir))
    assert ctl.recent_calls(10) == [] and ctl.calls == 2     # counters kept
    run_calls(ctl, 1, start=2)                               # the sinks keep working
    assert len(log.read_text().splitlines()) == 1


def test_shutdown_finishes_open_calls(tmp_path):
    cfg = Config(event_log="", bodies_dir=str(tmp_path))
    c = Controller(cfg, FakeTracer, poll_timeout_ms=10)
    c.start()
    seen = []
    c.subscribe(seen.append)
    c.tracer.feed(anthropic_exchange()[:1])
    deadline = time.monotonic() + 5
    while c.get_stats()["chunks"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    c.shutdown()
    assert [(e["incomplete"], e.get("incomplete_reason")) for e in seen] == [(True, "shutdown")]


def test_a_failing_sink_is_counted_not_raised(tmp_path):
    class Broken:
        name = "broken"

        def write(self, call):
            raise OSError("disk full")

        def close(self):
            pass
    c = Controller(Config(event_log="", bodies_dir=str(tmp_path)), FakeTracer, sinks=[Broken()], poll_timeout_ms=10)
    c.start()
    run_calls(c, 1)
    assert c.calls == 1 and c.get_stats()["sink_errors"] == 1
    c.shutdown()


def test_a_capture_error_reads_as_one_line_with_its_fix(tmp_path):
    from agtap.capture.tracer import CaptureError

    class NoHeaders(FakeTracer):
        def start(self):
            raise CaptureError("no kernel headers for 6.18", "apt-get install linux-headers-cloud-amd64")
    c = Controller(Config(event_log="", bodies_dir=str(tmp_path)), NoHeaders)
    with pytest.raises(Failed) as e:
        c.start()
    assert str(e.value) == "no kernel headers for 6.18 (fix: apt-get install linux-headers-cloud-amd64)"


def test_a_broken_price_override_is_logged(tmp_path, caplog):
    from agtap.pipeline import Pipeline
    from agtap.providers.pricing import PriceTable
    bad = tmp_path / "prices.json"
    bad.write_text("[1, 2]")
    prices = PriceTable(override=str(bad))

    def factory(emit, ignore_conn):
        return Pipeline(emit, ignore_conn=ignore_conn, prices=prices)
    with caplog.at_level("ERROR", logger="agtap.service"):
        Controller(Config(event_log="", bodies_dir=str(tmp_path)), FakeTracer, pipeline_factory=factory)
    assert "price overrides not used" in caplog.text and str(bad) in caplog.text


def test_the_backlog_is_bounded_and_what_it_drops_is_counted_as_lost(tmp_path):
    """A flood the loop cannot keep up with: memory stays at the cap, drops are lost records."""
    from agtap.capture.chunk import Chunk, ConnClosed, Direction
    from agtap.config import Config
    from agtap.service import controller as C
    from tests.support.harness import chunk

    ctl = C.Controller(Config(event_log=str(tmp_path / "e.jsonl"), bodies_dir=str(tmp_path / "b")),
                       lambda *a: None, schedule=lambda fn: None)     # the loop never drains
    mib = b"x" * (1 << 20)
    for i in range(100):
        ctl._on_item(chunk(Direction.INGRESS, mib, i, conn=ConnId.tls(9, 1), pid=9, proc="c"))
    kept = [x for x in ctl._inbox if isinstance(x, Chunk)]
    # 32 MiB of cap, each item counted as its payload + 300 bytes of objects: 31 fit
    # (31 x (1 MiB + 300 B) < 32 MiB < 32 x (1 MiB + 300 B))
    assert C.INBOX_MAX_BYTES == 32 << 20 and C.ITEM_OVERHEAD == 300 and len(kept) == 31
    assert ctl.inbox_dropped == 69 and ctl.inbox_dropped_bytes == 69 * ((1 << 20) + 300)
    closes = [x for x in ctl._inbox if isinstance(x, ConnClosed)]
    assert closes == [ConnClosed(ConnId.tls(9, 1), 31, "lost")]      # once per connection, where the hole starts
    assert ctl.get_stats()["lost_in_backlog"] == 69
    ctl._drain()
    assert not ctl._inbox and ctl._inbox_bytes == 0
