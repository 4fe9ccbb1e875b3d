"""The dashboard's state, plain Python: kept calls, filter, pause, service state, stats.

Events arrive as dicts (the JSON of Call.to_dict()). Every string in them came
from a traced process or an API response, so `clean_event` passes each through
agtap.textsafe before anything else sees it. Widgets read `view()` (newest
first, filtered, frozen while paused) and re-render only when `version` moved.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections import deque
from typing import Any, Iterable

from agtap.call import OUTCOME_OK, event_outcome
from agtap.textsafe import printable, safe_field

MAX_ROWS = 5000

# service states
NO_BUS = "no_bus"
NOT_RUNNING = "not_running"
CONNECTING = "connecting"
RUNNING = "running"
DENIED = "denied"


def clean(v: Any, depth: int = 0) -> Any:
    """Strings (keys and values, nested) made terminal-safe; one line each."""
    if isinstance(v, str):
        return safe_field(v, 2000)
    if isinstance(v, dict) and depth < 8:
        return {safe_field(str(k), 200): clean(x, depth + 1) for k, x in v.items()}
    if isinstance(v, (list, tuple)) and depth < 8:
        return [clean(x, depth + 1) for x in v[:200]]
    if isinstance(v, (int, float, bool)) or v is None:
        return v
    return safe_field(repr(v), 200)


def clean_event(ev: dict) -> dict:
    return clean(ev)


def clean_body(v: Any, depth: int = 0) -> Any:
    """Like clean() but multi-line strings keep their newlines (bodies, SSE text)."""
    if isinstance(v, str):
        return printable(v)
    if isinstance(v, dict) and depth < 32:
        return {safe_field(str(k), 200): clean_body(x, depth + 1) for k, x in v.items()}
    if isinstance(v, (list, tuple)) and depth < 32:
        return [clean_body(x, depth + 1) for x in v]
    if isinstance(v, (int, float, bool)) or v is None:
        return v
    return printable(repr(v))


def event_epoch(ev: dict) -> float | None:
    """The event's ts (RFC 3339) as seconds since the epoch, None when unreadable."""
    ts = ev.get("ts")
    if not isinstance(ts, str) or not ts:
        return None
    try:
        return _dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def is_error(ev: dict) -> bool:
    """Shown in the error colour: an error or an incomplete call (agtap.call.event_outcome)."""
    return event_outcome(ev) != OUTCOME_OK


def matches(ev: dict, needle: str) -> bool:
    """Case-insensitive substring of process, unit, model, provider, platform (the `/` filter)."""
    if not needle:
        return True
    n = needle.lower()
    for k in ("proc", "model", "provider", "platform", "unit", "response_model", "server_address"):
        v = ev.get(k)
        if isinstance(v, str) and n in v.lower():
            return True
    return str(ev.get("pid", "")) == needle


class Model:
    def __init__(self, max_rows: int = MAX_ROWS, clock=time.time):
        self.max_rows = max_rows
        self.clock = clock
        self.calls: deque[dict] = deque()  # oldest left, newest right
        self._ids: set[str] = set()
        self.version = 0          # bumps on every change that shows
        self.filter = ""
        self.paused = False
        self._frozen: list[dict] | None = None
        self._view_key: tuple | None = None
        self._view: list[dict] = []
        self.received = 0         # calls seen since start (incl. evicted)
        self.pending = 0          # calls received while paused
        # service
        self.state = CONNECTING
        self.state_detail = ""
        self.props: dict[str, Any] = {}
        self.stats: dict[str, Any] = {}
        self.stats_at = 0.0       # clock() when stats were read
        self.message = ""         # one-line notice in the footer
        self.message_error = False

    # --- calls -----------------------------------------------------------------
    def add(self, ev: dict) -> bool:
        """Add one event (newest). False if it was a duplicate (same event_id) or not an event."""
        if not isinstance(ev, dict):
            return False
        ev = clean_event(ev)
        cid = ev.get("event_id")
        if isinstance(cid, str) and cid:
            if cid in self._ids:
                return False
            self._ids.add(cid)
        self.calls.append(ev)
        while len(self.calls) > self.max_rows:
            old = self.calls.popleft()
            self._ids.discard(old.get("event_id"))
        self.received += 1
        if self.paused:
            self.pending += 1
        self.version += 1
        return True

    def add_live(self, ev: dict) -> bool:
        """A call just captured (CallCaptured): also counted into the totals until the next GetStats."""
        if not self.add(ev):
            return False
        ev = self.calls[-1]
        st = self.stats
        if isinstance(st.get("calls"), int):
            st["calls"] += 1
        for k in ("input_tokens", "output_tokens"):
            v = ev.get(k)
            if isinstance(st.get(k), int) and isinstance(v, int) and not isinstance(v, bool):
                st[k] += v
        c = ev.get("cost_usd")
        if isinstance(st.get("cost_usd"), (int, float)) and isinstance(c, (int, float)) and not isinstance(c, bool):
            st["cost_usd"] += c
        return True

    def add_many(self, evs: Iterable[dict]) -> int:
        return sum(1 for ev in evs if self.add(ev))

    def view(self) -> list[dict]:
        """Calls to show, newest first, filtered; frozen while paused."""
        key = (self.version if not self.paused else -1, self.filter, self.paused)
        if key != self._view_key:
            src = self._frozen if self.paused and self._frozen is not None else list(self.calls)
            self._view = [ev for ev in reversed(src) if matches(ev, self.filter)]
            self._view_key = key
        return self._view

    def set_filter(self, text: str) -> None:
        self.filter = safe_field(text, 100).strip()
        self.version += 1

    def toggle_pause(self) -> None:
        self.paused = not self.paused
        self._frozen = list(self.calls) if self.paused else None
        self.pending = 0
        self._view_key = None
        self.version += 1

    def find(self, event_id: str) -> dict | None:
        for ev in reversed(self.calls):
            if ev.get("event_id") == event_id:
                return ev
        return None

    # --- service ---------------------------------------------------------------
    def set_state(self, state: str, detail: str = "") -> None:
        if (state, detail) != (self.state, self.state_detail):
            self.state, self.state_detail = state, detail
            self.version += 1

    def set_stats(self, stats: dict) -> None:
        self.stats = clean(stats) if isinstance(stats, dict) else {}
        self.stats_at = self.clock()
        self.version += 1

    def set_props(self, props: dict) -> None:
        self.props = clean(props) if isinstance(props, dict) else {}
        self.version += 1

    def notify(self, text: str, error: bool = False) -> None:
        self.message, self.message_error = safe_field(text, 300), error
        self.version += 1

    @property
    def capturing(self) -> bool | None:
        v = self.props.get("Capturing")
        return bool(v) if v is not None else None
