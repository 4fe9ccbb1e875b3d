"""Server-sent events (text/event-stream), decoded incrementally.

Follows the WHATWG HTML "Server-sent events" parsing rules: lines end in LF,
CRLF or CR; an empty line dispatches the event; `data:` lines accumulate joined
by LF; `event:` names it (default "message"); `id:` sets the last event id;
lines starting with ':' are comments; one space after the colon is dropped; an
event with no data is not dispatched; a partial event at end of stream is not
dispatched. https://html.spec.whatwg.org/multipage/server-sent-events.html
"""

from __future__ import annotations

DEFAULT_MAX_EVENT = 16 * 1024 * 1024
_NAMES: dict[bytes, str] = {}  # event names seen, decoded once


class SseEvent:
    __slots__ = ("event", "data", "id", "ts_ns")

    def __init__(self, event: str, data: bytes, id: str | None, ts_ns: int):
        self.event = event
        self.data = data      # bytes, UTF-8 as sent; json.loads takes it as is
        self.id = id
        self.ts_ns = ts_ns    # ts of the chunk whose bytes completed the event

    def __repr__(self) -> str:
        return f"SseEvent({self.event!r}, {self.data[:60]!r})"


class SseDecoder:
    __slots__ = ("buf", "pending_cr", "started", "last_id", "max_event", "overflows")

    def __init__(self, max_event: int = DEFAULT_MAX_EVENT):
        self.buf = b""
        self.pending_cr = False
        self.started = False
        self.last_id: str | None = None
        self.max_event = max_event
        self.overflows = 0

    def feed(self, data: bytes, ts_ns: int) -> list[SseEvent]:
        if not self.started:
            if not data:
                return []
            self.started = True
            if data.startswith(b"\xef\xbb\xbf"):
                data = data[3:]
        if self.pending_cr:
            data = b"\r" + data
            self.pending_cr = False
        if b"\r" in data:     # (most APIs end lines with LF alone: one test for the usual chunk)
            if data.endswith(b"\r"):
                # A CR may be half of a CRLF split across chunks: decide when the next byte comes.
                data = data[:-1]
                self.pending_cr = True
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        old = self.buf
        if old:
            buf = old + data
            search = len(old) - 1
        else:
            buf = data
            search = 0
        events: list[SseEvent] = []
        start = 0
        end = len(buf)
        while True:
            i = buf.find(b"\n\n", search)
            if i < 0:
                break
            if i > start:
                ev = self._event(buf, start, i, ts_ns)
                if ev is not None:
                    events.append(ev)
            start = search = i + 2
            if start == end:     # the chunk ended with its event (one event per write, typically)
                break
        rest = buf[start:] if start else buf
        if len(rest) > self.max_event:
            self.overflows += 1
            # Drop the oversized event; keep parsing after its end.
            cut = rest.rfind(b"\n")
            rest = b"" if cut < 0 else b"\n"
        self.buf = rest
        return events

    def finish(self, ts_ns: int) -> list[SseEvent]:
        """End of stream: a CR held back is a line end; an event without its blank line is dropped."""
        if self.pending_cr:
            self.pending_cr = False
            out = self.feed(b"\n", ts_ns)
        else:
            out = []
        self.buf = b""
        return out

    def _event(self, buf: bytes, start: int, end: int, ts_ns: int) -> SseEvent | None:
        """The event in buf[start:end] (its lines, without the blank line)."""
        # Fast paths for the two shapes nearly every API sends: "event: X\ndata: Y" and "data: Y",
        # read in place (no copy of the block).
        if buf.startswith(b"event: ", start):
            nl = buf.find(b"\n", start, end)
            if nl > start and buf.startswith(b"data: ", nl + 1) and buf.find(b"\n", nl + 1, end) < 0:
                name = buf[start + 7:nl]
                ev = _NAMES.get(name)
                if ev is None:
                    ev = name.decode("utf-8", "replace") or "message"   # an empty name is the default
                    if len(_NAMES) < 256:
                        _NAMES[name] = ev
                return SseEvent(ev, buf[nl + 7:end], self.last_id, ts_ns)
        elif buf.startswith(b"data: ", start) and buf.find(b"\n", start, end) < 0:
            return SseEvent("message", buf[start + 6:end], self.last_id, ts_ns)
        return self._block(buf[start:end], ts_ns)

    def _block(self, block: bytes, ts_ns: int) -> SseEvent | None:
        event = "message"
        data: list[bytes] = []
        for line in block.split(b"\n"):
            if not line or line[0] == 58:  # ':' comment
                continue
            c = line.find(b":")
            if c < 0:
                name, value = line, b""
            else:
                name, value = line[:c], line[c + 1:]
                if value[:1] == b" ":
                    value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                event = value.decode("utf-8", "replace") or "message"
            elif name == b"id":
                if b"\0" not in value:
                    self.last_id = value.decode("utf-8", "replace")
        if not data:
            return None
        return SseEvent(event, data[0] if len(data) == 1 else b"\n".join(data), self.last_id, ts_ns)
