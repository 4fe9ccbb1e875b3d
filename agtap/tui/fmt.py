"""Values -> short cells, and the call table's column layout for a given width.

Pure functions of event dicts (already cleaned by model.clean_event); the
widgets only place the strings these return.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from urwid.util import calc_width

from agtap.textsafe import ELLIPSIS, safe_field

from .model import event_epoch, is_error


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _scaled(v, rungs, last) -> str:
    """`form(v)` of the first (below, form) rung that v is below; `last(v)` past them all."""
    for below, form in rungs:
        if v < below:
            return form(v)
    return last(v)


_TOKEN_RUNGS = ((10_000, str), (100_000, lambda n: f"{n / 1000:.1f}k"), (1_000_000, lambda n: f"{n // 1000}k"),
                (10_000_000, lambda n: f"{n / 1e6:.1f}M"))
_SECOND_RUNGS = ((10, lambda s: f"{s:.2f}s"), (100, lambda s: f"{s:.1f}s"), (6000, lambda s: f"{s / 60:.0f}m"))
_COST_RUNGS = ((10, lambda v: f"${v:.4f}"), (1000, lambda v: f"${v:.2f}"))


def tokens(n) -> str:
    if not _is_number(n):
        return "-"
    return _scaled(int(n), _TOKEN_RUNGS, lambda n: f"{n // 1_000_000}M")


def ms(v) -> str:
    if not _is_number(v):
        return "-"
    if v < 1000:
        return f"{v:.0f}ms"
    return _scaled(v / 1000, _SECOND_RUNGS, lambda s: f"{s / 3600:.0f}h")


def cost(v) -> str:
    if not _is_number(v):
        return "-"
    return _scaled(v, _COST_RUNGS, lambda v: f"${v:,.0f}")


def count(n) -> str:
    if not _is_number(n):
        return "-"
    return f"{int(n):,}"


def duration(s) -> str:
    if s is None or not isinstance(s, (int, float)) or s < 0:
        return "-"
    s = int(s)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d{h:02d}h"
    if h:
        return f"{h}h{m:02d}m"
    return f"{m}m{s:02d}s"


def clock(ev: dict) -> str:
    t = event_epoch(ev)
    if t is None:
        return "--:--:--"
    return time.strftime("%H:%M:%S", time.localtime(t))


def cols(s: str) -> int:
    """Terminal columns `s` takes (wide CJK characters take two, combining marks none)."""
    return len(s) if s.isascii() else calc_width(s, 0, len(s))


def fit(s: str, width: int, align: str = "<") -> str:
    """Exactly `width` terminal columns: cut with an ellipsis, or padded."""
    if width <= 0:
        return ""
    if s.isascii() or all(ord(c) < 0x300 or c == ELLIPSIS for c in s):
        if len(s) > width:
            s = s[: width - 1] + ELLIPSIS if width > 1 else s[:1]
        return f"{s:{align}{width}}"
    if cols(s) > width:
        while s and cols(s) > width - 1:
            s = s[:-1]
        s += ELLIPSIS
    pad = " " * (width - cols(s))
    return pad + s if align == ">" else s + pad


def proc_cell(ev: dict, width: int) -> str:
    name = safe_field(ev.get("proc") or "?", 64)
    pid = f"[{ev.get('pid')}]" if ev.get("pid") is not None else ""
    if cols(name) + len(pid) > width:
        name = fit(name, max(width - len(pid), 1)).rstrip()
    return name + pid


def stop_cell(ev: dict) -> str:
    if ev.get("incomplete"):
        return "incomplete:" + str(ev.get("incomplete_reason") or "?")
    return str(ev.get("stop_reason") or "")


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    width: int       # minimum width
    priority: int    # lower shows first when the terminal is narrow
    align: str = "<"
    flex: int = 0    # share of spare width
    max_width: int = 0


COLUMNS = (
    Column("time", "TIME", 9, 0),       # HH:MM:SS then "~" when streaming
    Column("proc", "PROCESS", 13, 0, flex=2, max_width=28),
    Column("unit", "UNIT", 12, 6, flex=1, max_width=30),
    Column("provider", "PROVIDER", 9, 5),
    Column("platform", "PLATFORM", 9, 5),
    Column("model", "MODEL", 17, 0, flex=3, max_width=40),
    Column("in", "IN", 5, 0, ">"),
    Column("out", "OUT", 5, 0, ">"),
    Column("cache", "CACHE", 5, 1, ">"),
    Column("latency", "LAT", 5, 1, ">"),
    Column("ttft", "TTFT", 5, 1, ">"),
    Column("stop", "STOP", 8, 1, flex=2, max_width=30),
    Column("tools", "TOOLS", 8, 4, flex=2, max_width=40),
)


def layout(maxcol: int) -> list[tuple[Column, int]]:
    """The columns that fit in `maxcol`, in display order, with their widths (1 space between)."""
    chosen: list[Column] = []
    used = -1
    for col in sorted(COLUMNS, key=lambda c: c.priority):
        if used + 1 + col.width <= maxcol:
            chosen.append(col)
            used += 1 + col.width
    widths = {c.key: c.width for c in chosen}
    spare = maxcol - max(used, 0)
    flex = [c for c in chosen if c.flex]
    while spare > 0 and flex:
        total = sum(c.flex for c in flex)
        gave = 0
        for c in list(flex):
            add = max(1, spare * c.flex // total) if spare - gave > 0 else 0
            add = min(add, c.max_width - widths[c.key], spare - gave)
            widths[c.key] += add
            gave += add
            if widths[c.key] >= c.max_width:
                flex.remove(c)
        spare -= gave
        if gave == 0:
            break
    return [(c, widths[c.key]) for c in COLUMNS if c in chosen]


def cell(ev: dict, key: str, width: int) -> str:
    if key == "time":
        return clock(ev) + ("~" if ev.get("streaming") else "")
    if key == "proc":
        return proc_cell(ev, width)
    if key == "unit":
        return str(ev.get("unit") or "")
    if key == "provider":
        return str(ev.get("provider") or "")
    if key == "platform":
        return str(ev.get("platform") or "")
    if key == "model":
        return str(ev.get("model") or ev.get("operation") or "")
    if key == "in":
        return tokens(ev.get("input_tokens"))
    if key == "out":
        return tokens(ev.get("output_tokens"))
    if key == "cache":
        return tokens(ev.get("cache_read_input_tokens"))
    if key == "latency":
        return ms(ev.get("latency_ms"))
    if key == "ttft":
        return ms(ev.get("ttft_ms"))
    if key == "stop":
        return stop_cell(ev)
    if key == "tools":
        tools = ev.get("tools") or []
        return ",".join(str(t) for t in tools) if isinstance(tools, list) else str(tools)
    return ""


def row_text(ev: dict, maxcol: int) -> str:
    parts = [fit(safe_field(cell(ev, c.key, w), 400), w, c.align) for c, w in layout(maxcol)]
    line = " ".join(parts)
    return line[:maxcol].ljust(maxcol) if line.isascii() else line


def header_text(maxcol: int) -> str:
    parts = [fit(c.title, w, c.align) for c, w in layout(maxcol)]
    return " ".join(parts)[:maxcol].ljust(maxcol)


def row_attr(ev: dict) -> str:
    return "error" if is_error(ev) else "row"
