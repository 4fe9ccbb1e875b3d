"""The other screens: aggregates (per model, per process), the detail of one call, help."""

from __future__ import annotations

import json
import time

import urwid

from agtap.textsafe import safe_field

from . import aggregate, fmt
from .model import Model, clean_body

SPARK_SPAN = 120.0  # seconds of history in the sparklines
MAX_BODY_LINES = 20000
MAX_LINE = 8000  # a base64 image in a prompt is one enormous line


def _agg_line(key: str, g: aggregate.Group | None, keyw: int, sparkw: int, spark: str = "") -> str:
    if g is None:  # title line
        cols = ["CALLS", "IN", "OUT", "COST", "LAT50", "LAT95", "TFT50", "TFT95"]
        widths = [5, 5, 5, 7, 5, 5, 5, 5]
        head = fmt.fit(key, keyw) + " " + " ".join(f"{c:>{w}}" for c, w in zip(cols, widths))
        return head + (" " + fmt.fit("LAST 2m", sparkw) if sparkw else "")
    cells = [(fmt.count(g.calls) if g.calls < 100000 else fmt.tokens(g.calls), 5),
             (fmt.tokens(g.input_tokens), 5), (fmt.tokens(g.output_tokens), 5),
             (fmt.cost(g.cost_usd) if g.priced else "-", 7),
             (fmt.ms(g.p("latency", 50)), 5), (fmt.ms(g.p("latency", 95)), 5),
             (fmt.ms(g.p("ttft", 50)), 5), (fmt.ms(g.p("ttft", 95)), 5)]
    line = fmt.fit(key, keyw) + " " + " ".join(fmt.fit(s, w, ">") for s, w in cells)
    return line + (" " + spark if sparkw else "")


class AggregatesView(urwid.Widget):
    """Per model and per process over the kept calls: calls, tokens, cost, p50/p95, calls/s."""

    _sizing = frozenset(["box"])
    _selectable = True

    def __init__(self, model: Model, clock=time.time, ascii_only: bool = False):
        super().__init__()
        self.model = model
        self.clock = clock
        self.ascii_only = ascii_only
        self.offset = 0
        self._key = None
        self._lines: list[tuple[str, str]] = []

    def update(self) -> None:
        self._invalidate()

    def lines(self, maxcol: int) -> list[tuple[str, str]]:
        key = (maxcol, self.model.version, int(self.clock()))
        if key == self._key:
            return self._lines
        calls = self.model.view()
        now = self.clock()
        sparkw = 0 if maxcol < 70 else 11 if maxcol < 100 else 24
        keyw = max(8, min(40, maxcol - 50 - (sparkw + 1 if sparkw else 0)))
        out: list[tuple[str, str]] = []
        total = aggregate.rate_buckets((aggregate.event_epoch(ev) or 0 for ev in calls), now, SPARK_SPAN,
                                       max(10, min(60, maxcol - 30)))
        times = [t for t in (aggregate.event_epoch(ev) for ev in calls) if t is not None and t > now - SPARK_SPAN]
        peak = max(aggregate.rate_buckets(times, now, SPARK_SPAN, int(SPARK_SPAN)), default=0)
        out.append(("title", f"calls/s, last 2 min (peak {peak}/s) "
                             f"{aggregate.sparkline(total, self.ascii_only)}"[:maxcol]))
        out.append(("dim", f"over the {len(calls)} calls kept"
                           + (f" matching /{self.model.filter}" if self.model.filter else "")))
        for by, title in (("model", "MODEL"), ("proc", "PROCESS")):
            out.append(("row", ""))
            out.append(("colhead", _agg_line(title, None, keyw, sparkw)))
            for g in aggregate.group_by(calls, by):
                spark = ""
                if sparkw:
                    spark = aggregate.sparkline(aggregate.rate_buckets(g.times, now, SPARK_SPAN, sparkw),
                                                self.ascii_only)
                line = _agg_line(safe_field(g.key, 100), g, keyw, sparkw, spark)
                out.append(("error" if g.errors == g.calls else "row", line))
        self._key, self._lines = key, out
        return out

    def render(self, size, focus=False):
        maxcol, maxrow = size
        lines = self.lines(maxcol)
        self.offset = max(0, min(self.offset, len(lines) - maxrow))
        shown = lines[self.offset:self.offset + maxrow]
        canvases = [urwid.Text((a, t), wrap="clip").render((maxcol,)) for a, t in shown]
        if len(shown) < maxrow:
            canvases.append(urwid.SolidCanvas(" ", maxcol, maxrow - len(shown)))
        combined = urwid.CanvasCombine([(c, None, False) for c in canvases])
        return combined

    def keypress(self, size, key):
        maxrow = size[1]
        step = {"up": -1, "down": 1, "page up": -maxrow, "page down": maxrow, "home": -10**9, "end": 10**9}
        if key in step:
            self.offset = max(0, self.offset + step[key])
            self._invalidate()
            return None
        return key


def field_lines(ev: dict) -> list[str]:
    width = max((len(str(k)) for k in ev), default=0)
    out = []
    for k, v in ev.items():
        if isinstance(v, (list, dict)):
            v = json.dumps(v, ensure_ascii=False)
        elif v is None or v == "":
            v = "-"
        out.append(f"{str(k):<{width}}  {safe_field(v, 4000)}")
    return out


def body_lines(bodies) -> list[str]:
    """Bodies (parsed JSON from GetCallBodies) as indented text; nested JSON strings expanded."""
    bodies = clean_body(bodies)
    if isinstance(bodies, dict):
        out = []
        for k, v in bodies.items():
            if isinstance(v, str):
                try:
                    v = json.loads(v)
                except ValueError:
                    pass
            out.append(f"── {k} ──")
            text = v if isinstance(v, str) else json.dumps(v, indent=2, ensure_ascii=False)
            out.extend(text.replace("\t", "    ").splitlines() or [""])
    else:
        text = bodies if isinstance(bodies, str) else json.dumps(bodies, indent=2, ensure_ascii=False)
        out = text.replace("\t", "    ").splitlines()
    out = [ln if len(ln) <= MAX_LINE else ln[:MAX_LINE] + f"… ({len(ln) - MAX_LINE} more characters)" for ln in out]
    if len(out) > MAX_BODY_LINES:
        out = out[:MAX_BODY_LINES] + [f"… {len(out) - MAX_BODY_LINES} more lines"]
    return out


class DetailView(urwid.WidgetWrap):
    """Every field of one call, then its request/response bodies when readable. Scrolls."""

    def __init__(self, ev: dict):
        self.ev = ev
        self.walker = urwid.SimpleFocusListWalker([])
        super().__init__(urwid.ListBox(self.walker))
        self.set_bodies("loading", None)

    def set_bodies(self, state: str, data) -> None:
        """state: loading | ok | denied | missing | error (data: bodies or the reason)."""
        head = [urwid.Text(("title", f"call {safe_field(self.ev.get('event_id'), 40)}  (esc: back, ↑↓ PgUp PgDn: scroll)"),
                           wrap="clip")]
        failed = fmt.row_attr(self.ev) == "error"
        marked = ("stop_reason", "incomplete", "http_status", "error_type")
        rows = [urwid.Text(("error" if failed and line.startswith(marked) else "row", line))
                for line in field_lines(self.ev)]
        rows.append(urwid.Text(""))
        if state == "ok":
            rows.append(urwid.Text(("title", "bodies (secrets removed)")))
            rows += [urwid.Text(line, wrap="any") for line in body_lines(data)]
        elif state == "loading":
            rows.append(urwid.Text(("dim", "bodies: loading…")))
        elif state == "denied":
            rows.append(urwid.Text(("error", "bodies: not permitted (" + safe_field(data, 200) + ")")))
        elif state == "missing":
            rows.append(urwid.Text(("dim", "bodies: none stored for this call")))
        else:
            rows.append(urwid.Text(("error", "bodies: " + safe_field(data, 200))))
        self.walker[:] = head + rows
        self.walker.set_focus(0)


HELP = """agtap-tui: live view of LLM API and MCP calls on this host

  q        quit
  tab      switch view: calls / aggregates
  enter    detail of the selected call: fields and bodies
  esc      back from the detail view
  ↑ ↓ PgUp PgDn Home End    move, scroll
  /        filter by process, model, provider, platform or unit
           (enter applies, an empty filter clears it)
  p        pause the table (new calls are still kept)
  s        start/stop capture (root or polkit io.agtap.manage)
  ?        this help; any key closes it

Error colour: a failed call (HTTP status ≥ 400, a provider or JSON-RPC
error) or an incomplete one.
"~" after the time: a streamed response.
LAT: latency. TTFT: time to first token.
"""


def help_view() -> urwid.Widget:
    return urwid.LineBox(urwid.Filler(urwid.Text(HELP), "top"), title="help")
