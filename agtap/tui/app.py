"""agtap-tui: the live dashboard (entry point `main`, also `agtap tui`).

One asyncio loop runs both urwid (AsyncioEventLoop) and dbus-next. Widgets are
refreshed from the Model at most every `refresh` seconds and the screen is
drawn only when something changed, so 200 calls/s cost a handful of redraws.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

import urwid

from agtap.textsafe import safe_field

from agtap.busclient import DASHBOARD_TIMEOUT_S, AccessDenied, BusClient, ClientError, NotRunning, ServiceError
from .link import DENIED_MESSAGE, Link
from .model import MAX_ROWS, RUNNING, Model
from .views import AggregatesView, DetailView, help_view
from .widgets import PALETTE, Banner, CallTable, Footer, HeaderView

EXIT_DENIED = 4
EXIT_NO_TTY = 2
REFRESH = 0.15      # seconds between widget refreshes (at most)
HEADER_EVERY = 1.0  # the header's uptime moves even when nothing else does


class BatchedMainLoop(urwid.MainLoop):
    """A MainLoop that draws only when marked dirty (input, resize, or new data)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.dirty = True
        self.draws = 0

    def entering_idle(self):
        if self.dirty and self.screen.started:
            self.dirty = False
            self.draw_screen()

    def draw_screen(self):
        self.draws += 1
        super().draw_screen()

    def _update(self, keys, raw):
        if keys:
            self.dirty = True
        super()._update(keys, raw)


class App:
    def __init__(self, client: BusClient, model: Model | None = None, bus: str = "system",
                 refresh: float = REFRESH, ascii_only: bool = False):
        self.client = client
        self.model = model or Model()
        self.bus = bus
        self.refresh = refresh
        self.exit_code = 0
        self.link = Link(client, self.model, on_denied=self._denied)
        self.header = HeaderView(self.model)
        self.banner = Banner(self.model, bus)
        self.table = CallTable(self.model)
        self.aggregates = AggregatesView(self.model, clock=self.model.clock, ascii_only=ascii_only)
        self.footer = Footer(self.model)
        self.view = "calls"
        self.detail: DetailView | None = None
        self.help_shown = False
        self.frame = urwid.Frame(self.table, header=urwid.Pile([self.header, self.banner]), footer=self.footer)
        self.loop: BatchedMainLoop | None = None
        self.widget_updates = 0
        self._shown_version = -1
        self._header_at = 0.0
        self._tasks: set[asyncio.Task] = set()
        self._filter_before = ""
        # the table follows the filter as it is typed
        urwid.connect_signal(self.footer.edit, "postchange", lambda *_: self._live_filter())

    # --- model -> widgets ------------------------------------------------------
    def update_widgets(self, force: bool = False) -> bool:
        """Refresh widgets from the model if it changed (or the header is due). True if it did."""
        now = self.model.clock()
        changed = self.model.version != self._shown_version
        if not (changed or force or now - self._header_at >= HEADER_EVERY):
            return False
        self._header_at = now
        self.header.update()
        if changed or force:
            self._shown_version = self.model.version
            self.banner.update()
            self.footer.update()
            if self.view == "calls":
                self.table.update()
            elif self.view == "aggregates":
                self.aggregates.update()
        self.widget_updates += 1
        if self.loop is not None:
            self.loop.dirty = True
        return True

    def _tick(self, *_):
        self.update_widgets()
        if self.loop is not None:
            self.loop.set_alarm_in(self.refresh, self._tick)

    def _show(self) -> None:
        if self.help_shown:
            body = urwid.Overlay(help_view(), self._body(), "center", ("relative", 95), "middle", ("relative", 95),
                                  min_width=40, min_height=8)
        else:
            body = self._body()
        self.frame.body = body
        self.update_widgets(force=True)

    def _body(self) -> urwid.Widget:
        if self.view == "detail" and self.detail is not None:
            return self.detail
        if self.view == "aggregates":
            return self.aggregates
        return self.table

    # --- keys ------------------------------------------------------------------
    def keypress(self, key) -> bool:
        """unhandled_input: the keys the focused widget did not use."""
        if not isinstance(key, str):
            return False
        m = self.model
        if self.footer.editing:
            if key == "enter":
                m.set_filter(self.footer.stop_edit())
                self.frame.focus_position = "body"
            elif key == "esc":  # back to the filter there was before '/'
                self.footer.stop_edit()
                m.set_filter(self._filter_before)
                self.frame.focus_position = "body"
            self.update_widgets(force=True)
            return True
        if key in ("q", "Q"):
            raise urwid.ExitMainLoop()
        if m.message and key not in ("window resize",):
            m.notify("")
        if self.help_shown:
            self.help_shown = False
            self._show()
            return True
        if key == "?":
            self.help_shown = True
            self._show()
        elif key == "tab":
            self.view = "aggregates" if self.view == "calls" else "calls"
            self.detail = None
            self._show()
        elif key in ("esc", "backspace", "left") and self.view == "detail":
            self.view, self.detail = "calls", None
            self._show()
        elif key == "enter" and self.view == "calls":
            ev = self.table.focused_event()
            if ev is not None:
                self.open_detail(ev)
        elif key == "/":
            self._filter_before = m.filter
            self.footer.start_edit(m.filter)
            self.frame.focus_position = "footer"
        elif key == "p":
            m.toggle_pause()
        elif key == "s":
            self._spawn(self.toggle_capture())
        else:
            return False
        self.update_widgets(force=True)
        return True

    def _live_filter(self) -> None:
        if self.footer.editing:
            self.model.set_filter(self.footer.edit.get_edit_text())

    def open_detail(self, ev: dict) -> None:
        self.detail = DetailView(ev)
        self.view = "detail"
        self._show()
        self._spawn(self._load_bodies(self.detail))

    async def _load_bodies(self, detail: DetailView) -> None:
        cid = detail.ev.get("event_id")
        try:
            if not cid:
                raise ServiceError("", "the call has no event_id")
            detail.set_bodies("ok", await self.client.call_bodies(cid))
        except AccessDenied as e:
            detail.set_bodies("denied", e.text or e.name)
        except NotRunning:
            detail.set_bodies("error", "the service is not running")
        except ClientError as e:
            detail.set_bodies("missing" if e.name.endswith(".NotFound") else "error", e.text or e.name)
        if self.loop is not None:
            self.loop.dirty = True

    async def toggle_capture(self) -> None:
        m = self.model
        if m.state != RUNNING:
            m.notify("the agtap service is not running: nothing to start or stop", error=True)
            return
        stopping = m.capturing is not False
        try:
            await (self.client.stop() if stopping else self.client.start())
            m.notify("capture stopped" if stopping else "capture started")
            await self.link.refresh()
        except AccessDenied:
            verb = "stop" if stopping else "start"
            m.notify(f"{verb}: not permitted (needs root or polkit io.agtap.manage): sudo agtapctl {verb}",
                     error=True)
        except ClientError as e:
            m.notify(f"{'stop' if stopping else 'start'} failed: {safe_field(e.text or e.name, 120)}", error=True)

    def _spawn(self, coro) -> None:
        t = asyncio.ensure_future(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # --- lifecycle -------------------------------------------------------------
    def _denied(self) -> None:
        self.exit_code = EXIT_DENIED
        if self.loop is not None:  # in the UI: end it; in preflight the caller checks link.denied
            asyncio.get_event_loop().stop()

    def make_loop(self, aloop: asyncio.AbstractEventLoop, screen=None) -> BatchedMainLoop:
        kw = {"screen": screen} if screen is not None else {}
        self.loop = BatchedMainLoop(self.frame, PALETTE, event_loop=urwid.AsyncioEventLoop(loop=aloop),
                                    unhandled_input=self.keypress, handle_mouse=False, **kw)
        self.loop.set_alarm_in(self.refresh, self._tick)
        return self.loop

    async def preflight(self) -> None:
        """Before the screen starts: one round, so AccessDenied exits without drawing anything."""
        await self.link.step()
        self.update_widgets(force=True)

    def run(self, aloop: asyncio.AbstractEventLoop, screen=None) -> int:
        aloop.run_until_complete(self.preflight())
        if self.link.denied:
            return EXIT_DENIED
        loop = self.make_loop(aloop, screen)
        loop.set_alarm_in(0, lambda *_: self._spawn(self.link.run()))
        try:
            loop.run()
        finally:
            for t in list(self._tasks):
                t.cancel()
            self.client.close()
        return self.exit_code


def _mono(args) -> bool:
    if args.mono or os.environ.get("NO_COLOR"):
        return True
    try:
        import curses
        curses.setupterm()
        return curses.tigetnum("colors") < 8
    except Exception:
        return True


def parse_args(argv):
    p = argparse.ArgumentParser(prog="agtap-tui", description="Live dashboard of LLM API and MCP calls (agtap).")
    p.add_argument("--bus", choices=("system", "session"), default="system", help="bus the service is on")
    p.add_argument("--address", help="D-Bus address to use instead of the bus's usual one")
    p.add_argument("--mono", action="store_true", help="no colours (also when NO_COLOR is set)")
    p.add_argument("--max-rows", type=int, default=MAX_ROWS, help="calls kept (default %(default)s)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # dbus-next and asyncio log through `logging`; a line on stderr would tear the screen.
    logging.basicConfig(handlers=[logging.NullHandler()], force=True)
    aloop = asyncio.new_event_loop()
    asyncio.set_event_loop(aloop)
    app = App(BusClient(args.bus, args.address, timeout=DASHBOARD_TIMEOUT_S), Model(max_rows=max(1, args.max_rows)), bus=args.bus,
              ascii_only=False)
    screen = urwid.raw_display.Screen()
    if _mono(args):
        screen.set_terminal_properties(colors=1)
    try:
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            aloop.run_until_complete(app.preflight())  # access denied still says so
            code = EXIT_DENIED if app.link.denied else EXIT_NO_TTY
            if code == EXIT_NO_TTY:
                print("agtap-tui: needs a terminal (use agtapctl for scripts)", file=sys.stderr)
        else:
            code = app.run(aloop, screen)
    except KeyboardInterrupt:
        code = 130
    except Exception as e:  # the terminal is restored by now; one line, not a traceback
        if os.environ.get("AGTAP_TUI_DEBUG"):
            raise
        print(f"agtap-tui: internal error: {type(e).__name__}: {safe_field(str(e), 200)}", file=sys.stderr)
        code = 1
    if code == EXIT_DENIED:
        print(DENIED_MESSAGE, file=sys.stderr)
    aloop.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
