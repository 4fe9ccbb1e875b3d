"""Rendering helpers for TUI tests: canvases to text, a screen that counts draws, key presses."""

from __future__ import annotations

import urwid
from urwid.display_common import BaseScreen


def lines(widget, size, focus=False) -> list[str]:
    """The widget rendered at `size` ((cols,) for flow, (cols, rows) for box) as text lines."""
    return [row.decode("utf-8") for row in widget.render(size, focus=focus).text]


def attrs(widget, size, focus=False) -> list[list]:
    """Per line, the attribute names of its runs."""
    return [[a for a, _cs, _t in row] for row in widget.render(size, focus=focus).content()]


def press(app, key, size=(80, 24)) -> None:
    """What MainLoop does with a key: the focused widgets first, then unhandled_input."""
    k = app.frame.keypress(size, key)
    if k:
        app.keypress(k)


class CountingScreen(BaseScreen):
    """A screen with no terminal: remembers the last frame and counts draws."""

    def __init__(self, size=(80, 24)):
        super().__init__()
        self.size = size
        self.draws = 0
        self.last: list[str] = []

    def get_cols_rows(self):
        return self.size

    def draw_screen(self, size, canvas):
        self.draws += 1
        self.last = [row.decode("utf-8") for row in canvas.text]

    def hook_event_loop(self, event_loop, callback):
        pass

    def unhook_event_loop(self, event_loop):
        pass

    def get_input_descriptors(self):
        return []

    def set_mouse_tracking(self, enable=True):
        pass

    def set_input_timeouts(self, *a, **kw):
        pass
