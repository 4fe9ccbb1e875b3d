"""Aggregates and detail views, and the whole frame at several sizes."""

from __future__ import annotations


import pytest

from agtap.tui import aggregate
from agtap.tui.app import App
from agtap.tui.model import NOT_RUNNING, RUNNING, Model
from agtap.tui.views import AggregatesView, DetailView
from tests.support.tui import events
from tests.support.tui.render import lines
from tests.support.tui.stub_client import StubClient


pytestmark = pytest.mark.usefixtures("utc")


NOW = events.BASE.timestamp() + 60


def test_percentile_nearest_rank():
    assert aggregate.percentile([], 50) is None
    assert aggregate.percentile([300, 100, 200], 50) == 200
    assert aggregate.percentile([300, 100, 200], 95) == 300
    assert aggregate.percentile(list(range(1, 101)), 95) == 95


def test_rate_buckets_and_sparkline():
    b = aggregate.rate_buckets([NOW - 1, NOW - 2, NOW - 70, NOW - 500], NOW, 120, 4)
    assert b == [0, 1, 0, 2]  # slices of 30 s: (-120,-90] (-90,-60] (-60,-30] (-30,0]
    assert aggregate.sparkline([0, 1, 0, 2]) == " ▄ █"
    assert aggregate.sparkline([0, 1, 0, 2], ascii_only=True) == " - #"


def test_aggregates_per_model_and_process():
    m = Model(clock=lambda: NOW)
    for i, (lat, ttft) in enumerate([(100, 50), (200, 60), (300, 70)]):
        m.add(events.llm(i, latency_ms=lat, ttft_ms=ttft))
    m.add(events.llm(3, model="gpt-4o", provider="openai", proc="node", pid=9, input_tokens=10, output_tokens=5,
                     cache_read=None, latency_ms=900, ttft_ms=None, cost_usd=None, stop_reason="error:server"))
    view = AggregatesView(m, clock=lambda: NOW)
    out = lines(view, (80, 24))
    assert all(len(line) == 80 for line in out)
    assert out[0].startswith("calls/s, last 2 min (peak 1/s) ")
    assert out[1].rstrip() == "over the 4 calls kept"
    assert out[3].rstrip() == "MODEL              CALLS    IN   OUT    COST LAT50 LAT95 TFT50 TFT95 LAST 2m"
    # 3 claude calls: 3×1200 in, 3×340 out, 3×$0.0087, latency p50 200 p95 300, ttft p50 60 p95 70
    assert out[4].startswith("claude-sonnet-4-5      3  3600  1020 $0.0261 200ms 300ms  60ms  70ms ")
    assert out[5].startswith("gpt-4o                 1    10     5       - 900ms 900ms     -     - ")
    assert out[7].rstrip() == "PROCESS            CALLS    IN   OUT    COST LAT50 LAT95 TFT50 TFT95 LAST 2m"
    assert out[8].startswith("python3                3  3600  1020 $0.0261 200ms 300ms  60ms  70ms ")
    assert out[9].startswith("node                   1    10     5       - 900ms 900ms     -     - ")
    # the calls were 57..60 s ago: the last 2-minute sparkline has bars in its second half only
    spark = out[4][len("claude-sonnet-4-5      3  3600  1020 $0.0261 200ms 300ms  60ms  70ms "):]
    assert spark == "     █     "  # 11 slices of 10.9 s; 57..60 s ago is the 6th


def test_detail_view_shows_every_field_and_bodies():
    ev = events.llm(0, tools=["get_weather"], event_id="ab" * 16)
    d = DetailView(Model().add(ev) and ev)
    out = lines(d, (80, 60))   # every field of the event fits
    assert out[0].startswith("call abababab")
    fields = {line.split()[0]: line.split(None, 1)[1].rstrip() for line in out[1:] if line.strip()
              and not line.startswith("bodies")}
    assert fields["model"] == "claude-sonnet-4-5"
    assert fields["input_tokens"] == "1200" and fields["output_tokens"] == "340"
    assert fields["tools"] == '["get_weather"]'
    assert fields["cost_usd"] == "0.0087" and fields["unit"] == "app.service"
    assert "bodies: loading…" in "\n".join(out)
    d.set_bodies("ok", {"request": {"messages": [{"role": "user", "content": "hello\x1b]0;pwn\x07 there"}]},
                        "response": "data: {\"x\": 1}\n\ndata: [DONE]"})
    text = "\n".join(lines(d, (80, 80)))
    assert "\x1b" not in text and "pwn" not in text
    assert '"content": "hello there"' in text
    assert "── response ──" in text and "data: [DONE]" in text
    d.set_bodies("denied", "bodies are for root")
    assert "bodies: not permitted (bodies are for root)" in "\n".join(lines(d, (80, 60)))


def test_detail_view_scrolls():
    ev = events.llm(0)
    d = DetailView(ev)
    d.set_bodies("ok", {"request": "\n".join(f"line {i}" for i in range(200))})
    first = lines(d, (80, 10), focus=True)
    for _ in range(10):   # past the event's fields (as many pages as the schema has fields) to the body
        d.keypress((80, 10), "page down")
        later = lines(d, (80, 10), focus=True)
        if any(line.startswith("line ") for line in later):
            break
    assert first != later and any(line.startswith("line ") for line in later)


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (40, 12), (200, 60)])
def test_whole_frame_renders_at_any_size(size):
    m = Model()
    for i in range(30):
        m.add(events.llm(i))
    m.set_state(NOT_RUNNING)
    app = App(StubClient(), m)
    app.update_widgets(force=True)
    out = lines(app.frame, size, focus=True)
    assert len(out) == size[1] and all(len(line) == size[0] for line in out)
    assert any("not running" in line for line in out)
    m.set_state(RUNNING)
    app.update_widgets()
    out = lines(app.frame, size, focus=True)
    assert not any("not running" in line for line in out)
    assert "q quit" in out[-1]


def test_frame_at_80x24_layout():
    m = Model(clock=lambda: 1000.0)
    m.set_props({"Version": "0.1.0", "Capturing": True, "Filters": {"pids": [], "comms": []}})
    m.set_stats({"calls": 2, "input_tokens": 2400, "output_tokens": 680, "cost_usd": 0.0174,
                 "lost_records": 0, "cut_records": 0, "uptime_s": 65})
    m.set_state(RUNNING)
    m.add(events.llm(0))
    m.add(events.llm(1, model="gpt-4o", provider="openai"))
    app = App(StubClient(), m)
    app.update_widgets(force=True)
    out = lines(app.frame, (80, 24), focus=True)
    assert out[0].rstrip() == "agtap 0.1.0 ● capturing  up 1m05s  filters: none"
    assert out[1].rstrip() == "calls 2  in 2400  out 680  cost $0.0174  lost 0  cut 0"
    assert out[2].startswith("TIME      PROCESS")
    assert out[3].startswith("23:37:26~ python3[4242] gpt-4o")
    assert out[4] == "23:37:25~ python3[4242] claude-sonnet-4-5  1200   340   800 2.35s 410ms end_turn"
    assert out[23].rstrip() == "q quit  / filter  p pause  s start/stop  tab view  enter detail  ? help"


def test_huge_bodies_are_bounded():
    from agtap.tui.views import body_lines
    out = body_lines({"request": {"image": "A" * 100_000}, "response": "\n".join(["x"] * 30_000)})
    assert max(len(line) for line in out) < 8100
    assert any(line.endswith("(92013 more characters)") for line in out)
    assert out[-1] == "… 10005 more lines"
