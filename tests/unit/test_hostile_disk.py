"""A hostile filesystem under the sinks: write failures must be visible in the service's stats.

The sinks count their own failures (JsonlSink/BodiesSink.stats()["write_errors"]) and log them at
most once a minute (tests/unit/test_sink_fsutil.py); a disk-full run of the real daemon is
tests/bpf/test_faults.py::test_disk_full_keeps_tracing_counts_failures_logs_once_and_recovers.
Here: do those counts reach GetStats (Controller.get_stats), where agtapctl and Prometheus read?
"""

from __future__ import annotations

import os

import pytest

from agtap.config import Config
from agtap.service.controller import Controller
from agtap.sinks.bodies import BodiesSink
from agtap.sinks.jsonl import JsonlSink
from tests.support.harness import Run, fixture, request, response


def _null_tracer(config, on_item, log):
    raise AssertionError("not started in this test")


def _controller_with_broken_sinks(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("x")
    (tmp_path / "log").mkdir()
    # a symlink at the log path (O_NOFOLLOW: refused whoever owns it) and a bodies "directory"
    # below a regular file: every write of both sinks fails
    os.symlink(victim, tmp_path / "log" / "events.jsonl")
    cfg = Config(event_log=str(tmp_path / "log" / "events.jsonl"), bodies_dir=str(victim / "bodies"))
    sinks = [BodiesSink(cfg.bodies_dir, 10, 1, group=None), JsonlSink(cfg.event_log, 1, 1, group=None)]
    ctl = Controller(cfg, _null_tracer, sinks=sinks)
    r = Run()
    ctl.pipeline = r.p
    r.p.emit = ctl._on_call
    for i in range(3):
        r.out(request("/v1/messages", {"model": "claude-x"}), 10 * i)
        r.inn(response(fixture("anthropic_message_tool.json")), 10 * i + 5)
    return ctl, sinks, victim


def test_sink_failures_are_counted_and_nothing_is_written_through_the_links(tmp_path):
    ctl, sinks, victim = _controller_with_broken_sinks(tmp_path)
    assert ctl.calls == 3
    assert [s.stats()["write_errors"] for s in sinks] == [4, 4]  # the refused open at start + 3 writes
    assert victim.read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log", "victim"]


def test_sink_failures_reach_the_service_stats(tmp_path):
    ctl, _sinks, _victim = _controller_with_broken_sinks(tmp_path)
    stats = ctl.get_stats()
    counted = {k: v for k, v in stats.items() if "write_error" in k}
    assert counted and sum(counted.values()) >= 6, stats
