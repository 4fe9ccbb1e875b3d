"""urwid widgets for the live view: header, banner, call table, footer.

Every widget reads the Model (plain Python) in `update()`; nothing here talks
D-Bus, so tests render these from event dicts at fixed sizes.
"""

from __future__ import annotations

import urwid

from agtap.busnames import JOIN_GROUP_FIX
from agtap.textsafe import safe_field

from . import fmt
from .model import CONNECTING, DENIED, NO_BUS, NOT_RUNNING, RUNNING, Model

# name, foreground, background, mono, foreground (256), background (256)
PALETTE = [
    ("header", "white,bold", "dark blue", "standout", "", ""),
    ("header_dim", "light gray", "dark blue", "standout", "", ""),
    ("state_on", "light green,bold", "dark blue", "standout,bold", "", ""),
    ("state_off", "yellow,bold", "dark blue", "standout,bold", "", ""),
    ("banner", "white,bold", "dark red", "standout,bold", "", ""),
    ("colhead", "bold", "", "bold,underline", "", ""),
    ("row", "", "", "", "", ""),
    ("error", "light red", "", "bold", "", ""),
    ("focus", "black", "light gray", "standout", "", ""),
    ("focus_error", "dark red", "light gray", "standout,bold", "", ""),
    ("footer", "black", "light gray", "standout", "", ""),
    ("notice", "yellow,bold", "dark red", "standout,bold", "", ""),
    ("key", "dark blue,bold", "light gray", "standout,bold", "", ""),
    ("title", "bold", "", "bold,underline", "", ""),
    ("dim", "dark gray", "", "", "", ""),
    ("spark", "light cyan", "", "", "", ""),
]


class HeaderView(urwid.WidgetWrap):
    """Two lines: service state, uptime, filters; then totals."""

    def __init__(self, model: Model):
        self.model = model
        self.line1 = urwid.Text("", wrap="clip")
        self.line2 = urwid.Text("", wrap="clip")
        super().__init__(urwid.AttrMap(urwid.Pile([self.line1, self.line2]), "header"))
        self.update()

    def update(self) -> None:
        m = self.model
        props, stats = m.props, m.stats
        version = safe_field(props.get("Version") or "", 20)
        if m.state == RUNNING:
            if m.capturing is False:
                state = ("state_off", "■ stopped")
            else:
                state = ("state_on", "● capturing")
        elif m.state == CONNECTING:
            state = ("state_off", "… connecting")
        elif m.state == NO_BUS:
            state = ("state_off", "○ no bus")
        elif m.state == DENIED:
            state = ("state_off", "✗ access denied")
        else:
            state = ("state_off", "○ not running")
        up = stats.get("uptime_s")
        if isinstance(up, (int, float)) and m.state == RUNNING:
            up = up + max(0.0, m.clock() - m.stats_at)
        filters = props.get("Filters")      # a{sv} {"pids": au, "comms": as}
        if isinstance(filters, dict):
            filters = " ".join(f"{k}=" + (",".join(str(x) for x in v) if isinstance(v, (list, tuple)) else str(v))
                               for k, v in filters.items() if v not in (None, "", [], {}))
        filters = safe_field(filters or "none", 60)
        scope = stats.get("probe_scope")
        probes = (f"  probes: per process, {stats.get('watched_processes', 0)} watched"
                  + (f", {stats['late_attach']} late" if stats.get("late_attach") else "")
                  + (f", {stats['demoted']} demoted" if stats.get("demoted") else "") if scope == "process"
                  else "  probes: host-wide" if scope == "host" else "")
        parts1 = [("header", f"agtap {version} " if version else "agtap "), state,
                  ("header", f"  up {fmt.duration(up) if m.state == RUNNING else '-'}"),
                  ("header", f"  filters: {filters}"), ("header", probes)]
        if m.paused:
            parts1.append(("state_off", f"  PAUSED (+{m.pending})"))
        if m.filter:
            parts1.append(("header", f"  /{m.filter}"))
        self.line1.set_text(parts1)
        lost = stats.get("lost_records")
        cut = stats.get("cut_records")
        perr = stats.get("parse_errors")
        line2 = (f"calls {fmt.count(stats.get('calls'))}  in {fmt.tokens(stats.get('input_tokens'))}"
                 f"  out {fmt.tokens(stats.get('output_tokens'))}"
                 f"  cost {fmt.cost(stats.get('cost_usd'))}"
                 f"  lost {fmt.count(lost)}  cut {fmt.count(cut)}")
        if perr is not None:
            line2 += f"  parse err {fmt.count(perr)}"
        self.line2.set_text(("header_dim", line2))


BANNERS = {
    NOT_RUNNING: "agtap service is not running (no owner of io.agtap.Agtap1 on the {bus} bus)."
                 " Waiting for it; reconnects automatically. Start it: sudo systemctl start agtap",
    NO_BUS: "cannot reach the {bus} bus ({detail}). Retrying every 2 s.",
    CONNECTING: "connecting to the agtap service on the {bus} bus…",
    DENIED: f"access denied: {JOIN_GROUP_FIX}",
}


class Banner(urwid.WidgetWrap):
    """A red line (or two) when the service cannot be shown; nothing when it can."""

    def __init__(self, model: Model, bus: str = "system"):
        self.model = model
        self.bus = bus
        self.text = urwid.Text("")
        self.pile = urwid.Pile([])
        super().__init__(self.pile)
        self.update()

    def update(self) -> None:
        tpl = BANNERS.get(self.model.state)
        if tpl is None:
            self.pile.contents[:] = []
            return
        self.text.set_text(tpl.format(bus=self.bus, detail=safe_field(self.model.state_detail, 120)))
        if not self.pile.contents:
            self.pile.contents[:] = [(urwid.AttrMap(self.text, "banner"), ("pack", None))]


class ColumnHeader(urwid.Widget):
    _sizing = frozenset(["flow"])

    def rows(self, size, focus=False):
        return 1

    def render(self, size, focus=False):
        (maxcol,) = size
        return urwid.Text(("colhead", fmt.header_text(maxcol)), wrap="clip").render((maxcol,))


class CallRow(urwid.Widget):
    """One call, laid out for whatever width it is given (so resizing just works)."""

    _sizing = frozenset(["flow"])
    _selectable = True

    def __init__(self, ev: dict):
        super().__init__()
        self.ev = ev
        self._cache: dict = {}

    def rows(self, size, focus=False):
        return 1

    def render(self, size, focus=False):
        (maxcol,) = size
        key = (maxcol, bool(focus))
        c = self._cache.get(key)
        if c is None:
            attr = fmt.row_attr(self.ev)
            if focus:
                attr = "focus_error" if attr == "error" else "focus"
            c = urwid.Text((attr, fmt.row_text(self.ev, maxcol)), wrap="clip").render((maxcol,))
            self._cache = {key: c}
        return c

    def keypress(self, size, key):
        return key


class CallWalker(urwid.ListWalker):
    """The model's view (newest first) as a ListBox walker; rows made on demand."""

    def __init__(self):
        self.items: list[dict] = []
        self.focus = 0
        self._widgets: dict[int, CallRow] = {}

    def set_items(self, items: list[dict]) -> None:
        focus_ev = self.items[self.focus] if 0 < self.focus < len(self.items) else None
        self.items = items
        self.focus = 0
        if focus_ev is not None:  # the user scrolled: keep their row under the cursor
            for i, ev in enumerate(items):
                if ev is focus_ev:
                    self.focus = i
                    break
        if len(self._widgets) > 2000:
            self._widgets.clear()
        self._modified()

    def _widget(self, pos: int) -> CallRow:
        ev = self.items[pos]
        w = self._widgets.get(id(ev))
        if w is None or w.ev is not ev:
            w = self._widgets[id(ev)] = CallRow(ev)
        return w

    def get_focus(self):
        if not self.items:
            return None, None
        self.focus = min(self.focus, len(self.items) - 1)
        return self._widget(self.focus), self.focus

    def set_focus(self, position):
        self.focus = position
        self._modified()

    def get_next(self, position):
        if position is None or position + 1 >= len(self.items):
            return None, None
        return self._widget(position + 1), position + 1

    def get_prev(self, position):
        if position is None or position <= 0:
            return None, None
        return self._widget(position - 1), position - 1

    def focused_event(self) -> dict | None:
        return self.items[self.focus] if 0 <= self.focus < len(self.items) else None


class CallTable(urwid.WidgetWrap):
    """Column titles over the scrolling list of calls."""

    def __init__(self, model: Model):
        self.model = model
        self.walker = CallWalker()
        self.listbox = urwid.ListBox(self.walker)
        self.empty = urwid.Filler(urwid.Text(("dim", "no calls yet"), align="center"), "top")
        self.frame = urwid.Frame(self.listbox, header=ColumnHeader())
        super().__init__(self.frame)
        self.update()

    def update(self) -> None:
        items = self.model.view()
        if items is not self.walker.items:
            self.walker.set_items(items)
        body = self.listbox if items else self.empty
        if self.frame.body is not body:
            self.frame.body = body

    def focused_event(self) -> dict | None:
        return self.walker.focused_event()


KEYS = [("q", "quit"), ("/", "filter"), ("p", "pause"), ("s", "start/stop"),
        ("tab", "view"), ("enter", "detail"), ("?", "help")]


class Footer(urwid.WidgetWrap):
    """Key hints, or the latest notice, or the filter prompt while typing one."""

    def __init__(self, model: Model):
        self.model = model
        self.text = urwid.Text("", wrap="clip")
        self.edit = urwid.Edit("filter: ")
        self.attr = urwid.AttrMap(self.text, "footer")
        super().__init__(self.attr)
        self.editing = False
        self.update()

    def start_edit(self, initial: str) -> None:
        self.editing = True
        self.edit.set_edit_text(initial)
        self.edit.set_edit_pos(len(initial))
        self._w = urwid.AttrMap(self.edit, "footer")

    def stop_edit(self) -> str:
        self.editing = False
        self._w = self.attr
        return self.edit.get_edit_text()

    def update(self) -> None:
        m = self.model
        if m.message:
            self.attr.set_attr_map({None: "notice" if m.message_error else "footer"})
            self.text.set_text(m.message)
            return
        self.attr.set_attr_map({None: "footer"})
        parts: list = []
        for k, what in KEYS:
            parts += [("key", k), ("footer", f" {what}  ")]
        self.text.set_text(parts)
