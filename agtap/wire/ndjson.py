"""Newline-delimited messages (MCP stdio: one JSON-RPC message per line).

Tolerates partial lines and several messages in one write. A line longer than
`max_line` is dropped up to its newline and counted, so a peer that never
writes a newline costs at most `max_line` bytes.
"""

from __future__ import annotations

DEFAULT_MAX_LINE = 16 * 1024 * 1024


class LineDecoder:
    __slots__ = ("buf", "max_line", "skipping", "overflows", "first_ts")

    def __init__(self, max_line: int = DEFAULT_MAX_LINE):
        self.buf = b""
        self.max_line = max_line
        self.skipping = False   # inside an over-long line, dropping until its newline
        self.overflows = 0
        self.first_ts = 0       # ts of the chunk that began the buffered partial line

    def feed(self, data: bytes, ts_ns: int) -> list[tuple[bytes, int, int]]:
        """Complete, non-blank lines as (line, ts of its first byte, ts of its newline)."""
        out: list[tuple[bytes, int, int]] = []
        start = 0
        if self.skipping:
            i = data.find(b"\n")
            if i < 0:
                return out
            self.skipping = False
            start = i + 1
        elif self.buf:
            i = data.find(b"\n")
            if i < 0:
                if len(self.buf) + len(data) > self.max_line:
                    self._overflow()
                else:
                    self.buf += data
                return out
            line = self.buf + data[:i]
            self.buf = b""
            self._emit(out, line, self.first_ts, ts_ns)
            start = i + 1
        while True:
            i = data.find(b"\n", start)
            if i < 0:
                break
            self._emit(out, data[start:i], ts_ns, ts_ns)
            start = i + 1
        if start < len(data):
            rest = data[start:]
            if len(rest) > self.max_line:
                self._overflow()
            else:
                self.buf = rest
                self.first_ts = ts_ns
        return out

    def take_partial(self) -> bytes:
        """The partial line buffered so far (e.g. when the capture cut the write); resets."""
        rest, self.buf = self.buf, b""
        return rest

    def _overflow(self) -> None:
        self.overflows += 1
        self.buf = b""
        self.skipping = True

    def _emit(self, out: list, line: bytes, first_ts: int, ts: int) -> None:
        if len(line) > self.max_line:
            self.overflows += 1
            return
        if line.endswith(b"\r"):
            line = line[:-1]
        if line.strip():
            out.append((line, first_ts, ts))
