"""HTTP/1.1 message framing for one direction of one connection (RFC 9112).

`HttpParser` takes the bytes one side wrote, in chunks of any size, and calls
back with each message's head, its body pieces (still content-encoded, framing
removed) and its end. It never buffers a body: body bytes are handed on as they
arrive, so a 5 MiB upload costs no more memory than its largest chunk.

After malformed input it reports the error once and then scans for the next
start line (`METHOD /target HTTP/1.x` or `HTTP/1.x NNN`) at a later offset, so
one broken exchange does not lose the rest of a keep-alive connection.
"""

from __future__ import annotations

import re

from typing import Callable

_BLANK_LINE = re.compile(rb"\r?\n\r?\n")

MAX_HEAD = 64 * 1024
MAX_LINE = 8 * 1024  # request line / chunk-size line

METHODS = frozenset(
    b"GET POST PUT DELETE PATCH HEAD OPTIONS CONNECT TRACE".split()
)
_METHOD_PREFIXES = frozenset(m[:i] for m in METHODS for i in range(1, len(m) + 1))

# states
HEAD, BODY_LEN, CHUNK_SIZE, CHUNK_DATA, CHUNK_CRLF, TRAILERS, BODY_CLOSE, RESYNC, DEAD = range(9)


class HttpHead:
    """A parsed request or response head."""

    __slots__ = ("is_request", "method", "target", "version", "status", "reason", "headers",
                 "start_ns", "start_wall", "no_body", "wire_bytes", "chunked")

    def __init__(self, is_request: bool):
        self.is_request = is_request
        self.method = ""
        self.target = ""
        self.version = ""
        self.status = 0
        self.reason = ""
        self.headers: list[tuple[str, str]] = []
        self.start_ns = 0
        self.start_wall = 0
        self.no_body = False   # set by the response's owner for HEAD requests
        self.wire_bytes = 0    # head + framed body as sent, updated as parsing goes
        self.chunked = False

    def header(self, name: str) -> str | None:
        return header_value(self.headers, name)


def header_value(headers: list[tuple[str, str]], name: str) -> str | None:
    """The first value of header `name` (any case), or None."""
    name = name.lower()
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def looks_like_request_start(prefix: bytes) -> bool | None:
    """True if `prefix` begins an HTTP request line, False if it cannot, None if too short to say."""
    sp = prefix.find(b" ")
    if sp < 0:
        return None if prefix in _METHOD_PREFIXES else False
    return prefix[:sp] in METHODS


def _parse_head(block: bytes, is_request: bool) -> HttpHead:
    if b"\r" in block:
        block = block.replace(b"\r\n", b"\n")
    lines = block.split(b"\n")
    h = HttpHead(is_request)
    start = lines[0].decode("latin-1")
    if is_request:
        parts = start.split(" ")
        if len(parts) != 3 or parts[0].encode() not in METHODS or not parts[2].startswith("HTTP/1."):
            raise ValueError("bad request line")
        h.method, h.target, h.version = parts
    else:
        parts = start.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or len(parts[1]) != 3 or not parts[1].isdigit():
            raise ValueError("bad status line")
        h.version = parts[0]
        h.status = int(parts[1])
        h.reason = parts[2] if len(parts) > 2 else ""
    headers = h.headers
    for raw in lines[1:]:
        if not raw:
            continue
        if raw[0] in (32, 9):  # obsolete line folding: continues the previous value
            if not headers:
                raise ValueError("bad header folding")
            k, v = headers[-1]
            headers[-1] = (k, v + " " + raw.strip().decode("latin-1"))
            continue
        c = raw.find(b":")
        if c <= 0:
            raise ValueError("bad header line")
        headers.append((raw[:c].strip().decode("latin-1"), raw[c + 1:].strip().decode("latin-1")))
    return h


class HttpParser:
    """Frames the messages of one direction. Callbacks:

    on_head(head), on_body(head, data, ts_ns), on_end(head, ts_ns), on_error(reason, ts_ns).
    A response's on_head may set `head.no_body` (answer to HEAD) before framing is chosen.
    """

    def __init__(self, is_request: bool, on_head: Callable, on_body: Callable,
                 on_end: Callable, on_error: Callable, max_head: int = MAX_HEAD):
        self.is_request = is_request
        self.on_head, self.on_body, self.on_end, self.on_error = on_head, on_body, on_end, on_error
        self.max_head = max_head
        self.state = HEAD
        self.buf = b""
        self.pos = 0
        self.old_len = 0          # bytes of buf carried over from earlier chunks
        self.old_ts = 0
        self.old_wall = 0
        self.ts = 0
        self.wall = 0
        self.remaining = 0
        self.cur: HttpHead | None = None
        self.head_ts = 0
        self.head_wall = 0
        self.head_seen = False    # the current head's first byte has arrived

    # -- input -------------------------------------------------------------
    def feed(self, data: bytes, ts: int, wall: int = 0) -> None:
        if self.state == DEAD:
            return
        if self.pos < len(self.buf):
            self.buf = self.buf[self.pos:] + data
            self.old_len = len(self.buf) - len(data)
        else:
            self.buf = data
            self.old_len = 0
            self.old_ts, self.old_wall = ts, wall
        self.pos = 0
        self.ts, self.wall = ts, wall
        # Step the state machine until a step needs bytes that have not come yet.
        steps = _STEPS
        while steps[self.state](self):
            pass
        if self.pos >= len(self.buf):
            self.buf, self.pos, self.old_len = b"", 0, 0
        elif self.pos >= self.old_len:   # what is left came with this chunk
            self.old_ts, self.old_wall = ts, wall

    def close(self, ts: int) -> bool:
        """The stream ended. Ends an until-close body normally; returns True if a message was cut short."""
        if self.state == BODY_CLOSE and self.cur is not None:
            self._end(self.ts)   # the body's last byte came with the last chunk, not at close
            return False
        return self.cur is not None

    def stop(self) -> None:
        """The connection no longer speaks HTTP/1.1 (after 101 Switching Protocols): drop all further bytes."""
        self.cur = None
        self.state = DEAD
        self.buf, self.pos, self.old_len = b"", 0, 0

    def take_rest(self) -> bytes:
        """From an on_head callback after `101 Switching Protocols`: the bytes that followed the head
        in this read (the new protocol's); the parser then stops as stop() does."""
        rest = self.buf[self.pos:]
        self.stop()
        return rest

    def abandon(self) -> None:
        """Drop the message in progress and look for the next start line (after a cut or an ignore)."""
        self.cur = None
        self.head_seen = False
        if self.state != DEAD:
            self.state = RESYNC

    # -- machinery ---------------------------------------------------------
    def _error(self, reason: str) -> None:
        self.cur = None
        self.head_seen = False
        self.state = RESYNC
        self.pos += 1  # never resynchronise onto the same broken start line
        self.on_error(reason, self.ts)

    def _end(self, ts: int) -> None:
        cur = self.cur
        self.cur = None
        self.head_seen = False
        self.state = HEAD
        self.on_end(cur, ts)

    def _body(self, take: int) -> None:
        pos = self.pos
        data = self.buf[pos:pos + take]
        self.pos = pos + take
        self.cur.wire_bytes += take
        self.on_body(self.cur, data, self.ts)

    # Each step handles the state it is named after; True: go on (state or position moved),
    # False: wait for the next chunk.
    def _step_head(self) -> bool:
        buf, pos = self.buf, self.pos
        n = len(buf)
        if not self.head_seen:
            # Stray CRLFs between messages are allowed (RFC 9112 §2.2).
            while pos < n and buf[pos] in (13, 10):
                pos += 1
            self.pos = pos
            if pos >= n:
                return False
            self.head_seen = True
            if pos < self.old_len:
                self.head_ts, self.head_wall = self.old_ts, self.old_wall
            else:
                self.head_ts, self.head_wall = self.ts, self.wall
        # the earliest blank line ends the head, whatever its line endings and
        # however the bytes were cut
        m = _BLANK_LINE.search(buf, pos)
        end, sep = (m.start(), m.end() - m.start()) if m else (-1, 0)
        if end < 0 or end - pos > self.max_head:
            return self._no_line(self.max_head, "header_too_large")
        try:
            head = _parse_head(buf[pos:end], self.is_request)
        except ValueError as e:
            self._error(str(e))
            return True
        head.start_ns, head.start_wall = self.head_ts, self.head_wall
        head.wire_bytes = end + sep - pos
        self.pos = end + sep
        self.cur = head
        self.on_head(head)
        if self.cur is head:  # else the callback abandoned it
            self._frame(head)
        return True

    def _step_counted(self) -> bool:
        """BODY_LEN or CHUNK_DATA: `remaining` more body bytes."""
        st = self.state
        avail = len(self.buf) - self.pos
        if avail <= 0:
            return False
        take = avail if avail < self.remaining else self.remaining
        self.remaining -= take
        self._body(take)
        if self.remaining == 0:
            if st == BODY_LEN:
                self._end(self.ts)
            else:
                self.state = CHUNK_CRLF
        return True

    def _step_chunk_size(self) -> bool:
        buf, pos = self.buf, self.pos
        i = buf.find(b"\n", pos)
        if i < 0:
            return self._no_line(MAX_LINE, "chunk_size_line_too_long")
        line = buf[pos:i].split(b";", 1)[0].strip()
        try:
            size = int(line, 16)
            if size < 0 or not line.isalnum():
                raise ValueError
        except ValueError:
            self._error("bad_chunk_size")
            return True
        cur = self.cur
        cur.wire_bytes += i + 1 - pos
        pos = i + 1
        if size == 0:
            self.pos = pos
            self.state = TRAILERS
        elif buf[pos + size:pos + size + 2] == b"\r\n":
            # Fast path: the whole chunk and its CRLF are here (one event per write, typically).
            self.pos = pos + size + 2
            cur.wire_bytes += size + 2
            self.on_body(cur, buf[pos:pos + size], self.ts)
            # The read usually ends with its chunk: then wait here (every step waits on no bytes)
            # instead of one more step that finds no size line.
            return self.pos < len(self.buf)
        else:
            self.pos = pos
            self.remaining = size
            self.state = CHUNK_DATA
        return True

    def _step_chunk_crlf(self) -> bool:
        buf, pos = self.buf, self.pos
        n = len(buf)
        if pos >= n:
            return False
        if buf[pos] == 10:
            k = 1
        elif buf[pos] == 13:
            if pos + 1 >= n:
                return False
            if buf[pos + 1] != 10:
                self._error("bad_chunk_end")
                return True
            k = 2
        else:
            self._error("bad_chunk_end")
            return True
        self.cur.wire_bytes += k
        self.pos = pos + k
        self.state = CHUNK_SIZE
        return True

    def _step_trailers(self) -> bool:
        buf, pos = self.buf, self.pos
        i = buf.find(b"\n", pos)
        if i < 0:
            return self._no_line(self.max_head, "trailers_too_large")
        self.cur.wire_bytes += i + 1 - pos
        self.pos = i + 1
        if not buf[pos:i].strip(b"\r"):
            self._end(self.ts)
        return True

    def _step_body_close(self) -> bool:
        n = len(self.buf)
        if self.pos >= n:
            return False
        self._body(n - self.pos)
        return True

    def _no_line(self, limit: int, reason: str) -> bool:
        """The line (or head) is not complete yet: past `limit` bytes it is an error (go on from
        the resync), else wait for more."""
        if len(self.buf) - self.pos > limit:
            self._error(reason)
            return True
        return False

    def _step_dead(self) -> bool:
        self.pos = len(self.buf)
        return False

    def _frame(self, head: HttpHead) -> None:
        if not self.is_request:
            if 100 <= head.status < 200:
                # Interim response (100 Continue, 103 Early Hints): the real one follows.
                # 101 Switching Protocols: what follows is no longer HTTP/1.1.
                self.cur = None
                self.head_seen = False
                self.state = DEAD if head.status == 101 else HEAD
                return
            if head.no_body or head.status in (204, 304):
                self._end(self.ts)
                return
        te = head.header("transfer-encoding")
        if te is not None and "chunked" in te.lower():
            head.chunked = True
            self.state = CHUNK_SIZE
            return
        cl = head.header("content-length")
        if cl is not None:
            try:
                length = int(cl.split(",")[0].strip())
                if length < 0:
                    raise ValueError
            except ValueError:
                self._error("bad_content_length")
                return
            if length == 0:
                self._end(self.ts)
            else:
                self.remaining = length
                self.state = BODY_LEN
            return
        if self.is_request:
            self._end(self.ts)
        else:
            self.state = BODY_CLOSE

    def _resync(self) -> bool:
        """Find the next start line; True when parsing can go on from self.pos."""
        buf, pos = self.buf, self.pos
        n = len(buf)
        while True:
            if self.is_request:
                i = buf.find(b" HTTP/1.", pos)
                if i < 0:
                    break
                ls = buf.rfind(b"\n", pos, i) + 1
                if ls == 0:
                    ls = pos
                # A request line starts a line, or a write (the capture resumes at one).
                for start in (ls, self.old_len) if ls < self.old_len < i else (ls,):
                    line = buf[start:i]
                    sp = line.find(b" ")
                    if sp > 0 and line[:sp] in METHODS and line.find(b" ", sp + 1) < 0 and len(line) > sp + 1:
                        self.pos = start
                        self.state = HEAD
                        return True
                pos = i + 1
            else:
                i = buf.find(b"HTTP/1.", pos)
                if i < 0:
                    break
                if i == 0 or buf[i - 1] == 10 or i == self.old_len:   # starts a line or a read
                    if n - i < 12:
                        self.pos = i
                        return False
                    if buf[i + 8:i + 9] == b" " and buf[i + 9:i + 12].isdigit():
                        self.pos = i
                        self.state = HEAD
                        return True
                pos = i + 1
        # Keep a tail that may hold the start of a start line.
        self.pos = max(pos, n - MAX_LINE)
        return False


# the step for each state, indexed by it
_STEPS = tuple({HEAD: HttpParser._step_head, BODY_LEN: HttpParser._step_counted,
                CHUNK_SIZE: HttpParser._step_chunk_size, CHUNK_DATA: HttpParser._step_counted,
                CHUNK_CRLF: HttpParser._step_chunk_crlf, TRAILERS: HttpParser._step_trailers,
                BODY_CLOSE: HttpParser._step_body_close, RESYNC: HttpParser._resync,
                DEAD: HttpParser._step_dead}[state] for state in range(DEAD + 1))
