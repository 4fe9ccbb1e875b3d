"""agtap-tui widgets rendered to text at fixed sizes, fed from real Call.to_dict() events."""

from __future__ import annotations


import pytest

from agtap.tui import fmt
from agtap.tui.model import DENIED, NO_BUS, NOT_RUNNING, RUNNING, Model
from agtap.tui.widgets import Banner, CallTable, HeaderView
from tests.support.tui import events
from tests.support.tui.render import attrs, lines

ROW0 = "23:37:25~ python3[4242] claude-sonnet-4-5  1200   340   800 2.35s 410ms end_turn"


pytestmark = pytest.mark.usefixtures("utc")


def test_row_shows_the_call_fields_at_80_columns():
    m = Model()
    m.add(events.llm(0))
    out = lines(CallTable(m), (80, 5))
    assert out[0] == "TIME      PROCESS       MODEL                IN   OUT CACHE   LAT  TTFT STOP    "
    assert out[1] == ROW0
    assert all(len(line) == 80 for line in out)
    assert out[2].strip() == ""


def test_newest_row_is_on_top():
    m = Model()
    m.add(events.llm(0, model="claude-sonnet-4-5"))
    m.add(events.llm(1, model="gpt-4o", provider="openai", input_tokens=55, output_tokens=7, streaming=False))
    m.add(events.mcp(2))
    out = lines(CallTable(m), (80, 5))
    assert out[1].startswith("23:37:27  node[777]     tools/call")
    assert out[2].startswith("23:37:26  python3[4242] gpt-4o               55     7   800 2.35s 410ms end_turn")
    assert out[3] == ROW0


def test_wider_terminal_adds_provider_platform_unit_and_tools_columns():
    m = Model()
    m.add(events.llm(0, tools=["get_weather", "search"]))
    out = lines(CallTable(m), (180, 3))
    assert out[0].split() == ["TIME", "PROCESS", "UNIT", "PROVIDER", "PLATFORM", "MODEL", "IN", "OUT", "CACHE", "LAT",
                              "TTFT", "STOP", "TOOLS"]
    assert out[1].split() == ["23:37:25~", "python3[4242]", "app.service", "anthropic", "anthropic", "claude-sonnet-4-5",
                              "1200", "340", "800", "2.35s", "410ms", "end_turn", "get_weather,search"]


def test_the_5001st_event_drops_the_oldest():
    m = Model()
    evs = [events.llm(i, event_id=f"{i:032x}") for i in range(5001)]
    for ev in evs:
        m.add(ev)
    assert len(m.calls) == 5000
    view = m.view()
    assert len(view) == 5000
    assert view[0]["event_id"] == f"{5000:032x}"
    assert view[-1]["event_id"] == f"{1:032x}"
    assert m.find(f"{0:032x}") is None
    # the dropped id may come back (it is not remembered forever)
    assert m.add(evs[0]) is True


def test_duplicate_ids_are_added_once():
    m = Model()
    ev = events.llm(0)
    assert m.add(ev) is True
    assert m.add(dict(ev)) is False
    assert len(m.calls) == 1


def test_hostile_strings_render_without_control_characters():
    m = Model()
    m.add(events.llm(0, model="\x1b]0;pwn\x07claude-x", proc="\x1b[2Jevil\x9b31m", tools=["\x1b[1mtool\x07"],
                     stop_reason="end\x1b[5m_turn"))
    table = CallTable(m)
    text = "\n".join(lines(table, (140, 3)))
    for bad in ("\x1b", "\x07", "\x9b", "pwn"):
        assert bad not in text
    assert "claude-x" in text and "evil" in text and "tool" in text and "end_turn" in text
    # the kept event itself is clean, so every other view is too
    kept = m.calls[0]
    assert kept["model"] == "claude-x" and kept["proc"] == "evil" and kept["tools"] == ["tool"]


def test_error_and_incomplete_rows_get_the_error_colour():
    m = Model()
    m.add(events.llm(0))
    m.add(events.llm(1, stop_reason="error:rate_limit_error"))
    m.add(events.llm(2, stop_reason=None, incomplete=True, incomplete_reason="connection_closed"))
    table = CallTable(m)
    out = lines(table, (80, 4))
    assert out[1].endswith("410ms incompl…")  # cut to the 8-column STOP cell at 80 columns
    assert "error:r" in out[2]
    a = attrs(table, (80, 4))
    assert a[1] == ["error"] and a[2] == ["error"] and a[3] == ["row"]
    # the focused row (top) keeps a distinct error colour when focused
    assert attrs(table, (80, 4), focus=True)[1] == ["focus_error"]


def test_header_shows_state_uptime_filters_and_totals():
    m = Model(clock=lambda: 1000.0)
    m.set_props({"Version": "0.1.0", "Capturing": True, "Filters": {"pids": [], "comms": ["python3"]}})
    m.set_stats({"calls": 1234, "input_tokens": 2_345_678, "output_tokens": 456_789, "cost_usd": 12.3456,
                 "lost_records": 3, "cut_records": 1, "parse_errors": 0, "uptime_s": 3720})
    m.set_state(RUNNING)
    out = lines(HeaderView(m), (80,))
    assert out[0].rstrip() == "agtap 0.1.0 ● capturing  up 1h02m  filters: comms=python3"
    assert out[1].rstrip() == "calls 1,234  in 2.3M  out 456k  cost $12.35  lost 3  cut 1  parse err 0"
    m.set_props({"Version": "0.1.0", "Capturing": False, "Filters": {"pids": [], "comms": []}})
    m.toggle_pause()
    m.set_filter("gpt")
    assert lines(HeaderView(m), (80,))[0].rstrip() == "agtap 0.1.0 ■ stopped  up 1h02m  filters: none  PAUSED (+0)  /gpt"


def test_header_shows_the_probe_scope_and_the_processes_watched():
    m = Model(clock=lambda: 1000.0)
    m.set_props({"Version": "0.1.0", "Capturing": True, "Filters": {"pids": [], "comms": []}})
    m.set_stats({"uptime_s": 65, "probe_scope": "process", "watched_processes": 7})
    m.set_state(RUNNING)
    assert lines(HeaderView(m), (100,))[0].rstrip() == \
        "agtap 0.1.0 ● capturing  up 1m05s  filters: none  probes: per process, 7 watched"
    m.set_stats({"uptime_s": 65, "probe_scope": "process", "watched_processes": 7, "late_attach": 2, "demoted": 3})
    assert lines(HeaderView(m), (120,))[0].rstrip().endswith("probes: per process, 7 watched, 2 late, 3 demoted")
    m.set_stats({"uptime_s": 65, "probe_scope": "host", "watched_processes": 0})
    assert lines(HeaderView(m), (100,))[0].rstrip().endswith("filters: none  probes: host-wide")


def test_banner_when_the_service_is_not_running():
    m = Model()
    m.set_state(NOT_RUNNING)
    out = lines(Banner(m, "system"), (80,))
    assert out == [
        "agtap service is not running (no owner of io.agtap.Agtap1 on the system bus).   ",
        "Waiting for it; reconnects automatically. Start it: sudo systemctl start agtap  ",
    ]
    assert lines(HeaderView(m), (80,))[0].startswith("agtap ○ not running  up -")
    m.set_state(RUNNING)
    b = Banner(m, "system")
    assert b.rows((80,)) == 0


def test_banner_when_the_bus_is_missing_and_when_denied():
    m = Model()
    m.set_state(NO_BUS, "[Errno 2] No such file or directory")
    assert [line.rstrip() for line in lines(Banner(m, "system"), (80,))] == [
        "cannot reach the system bus ([Errno 2] No such file or directory). Retrying",
        "every 2 s."]
    assert lines(HeaderView(m), (80,))[0].startswith("agtap ○ no bus  up -")
    m.set_state(DENIED)
    text = " ".join(line.strip() for line in lines(Banner(m, "system"), (80,)))
    assert text == ("access denied: add yourself to group agtap: sudo usermod -aG agtap $USER, then log in"
                    " again")


def test_number_formats():
    assert [fmt.tokens(n) for n in (None, 0, 1200, 9999, 12345, 456_789, 2_345_678, 45_000_000)] == \
        ["-", "0", "1200", "9999", "12.3k", "456k", "2.3M", "45M"]
    assert [fmt.ms(v) for v in (None, 12.5, 999, 2350, 12_340, 600_000)] == \
        ["-", "12ms", "999ms", "2.35s", "12.3s", "10m"]
    assert [fmt.duration(s) for s in (None, 5, 3720, 90061)] == ["-", "0m05s", "1h02m", "1d01h"]
    assert fmt.cost(0.0087) == "$0.0087" and fmt.cost(12.3456) == "$12.35"


def test_header_with_pid_and_comm_filters_and_stats_not_read_yet():
    """The service's Filters is a{sv} {"pids": au, "comms": as}; a total GetStats has not given
    yet shows as "-", not as a number."""
    m = Model(clock=lambda: 1000.0)
    m.set_props({"Version": "0.1.0", "Capturing": True, "Filters": {"pids": [42, 7], "comms": ["python3"]}})
    m.set_stats({"calls": 2, "uptime_s": 59.6, "lost_records": 0, "cut_records": 0})
    m.set_state(RUNNING)
    m.add(events.llm(0, cost_usd=0.01))
    out = lines(HeaderView(m), (80,))
    assert out[0].rstrip() == "agtap 0.1.0 ● capturing  up 0m59s  filters: pids=42,7 comms=python3"
    assert out[1].rstrip() == "calls 2  in -  out -  cost -  lost 0  cut 0"


def test_live_calls_move_the_totals_until_the_next_stats_read():
    m = Model()
    m.set_stats({"calls": 1, "input_tokens": 100, "output_tokens": 10, "cost_usd": 0.5})
    m.add_live(events.llm(0, input_tokens=1200, output_tokens=340, cost_usd=0.25))
    assert (m.stats["calls"], m.stats["input_tokens"], m.stats["output_tokens"]) == (2, 1300, 350)
    assert m.stats["cost_usd"] == pytest.approx(0.75)
    ev = events.llm(1)
    m.add_live(ev)
    m.add_live(ev)  # a duplicate is not counted twice
    assert m.stats["calls"] == 3


def test_wide_characters_keep_the_columns_aligned():
    from urwid.util import calc_width
    m = Model()
    m.add(events.llm(0))
    m.add(events.llm(1, model="通义千问-max-长上下文版本", proc="工具"))
    out = lines(CallTable(m), (80, 3))
    wide, plain = out[1], out[2]
    assert calc_width(wide, 0, len(wide)) == 80
    # IN and OUT end at the same terminal column in both rows
    assert calc_width(wide, 0, wide.index(" 1200 ") + 5) == calc_width(plain, 0, plain.index(" 1200 ") + 5)
    assert "通义千问" in wide and "…" in wide and "工具[4242]" in wide
