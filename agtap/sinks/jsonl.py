"""The event log: one JSON object per call per line, rotated by size, optionally echoed to stdout.

Lines are never torn: each is written with one os.write on an O_APPEND fd,
and a short write (disk full mid-line) is cut back off with ftruncate before
the error is counted. Rotation happens between lines, before a line that
would push the file past the size limit, so every line lands whole in exactly
one file. On a write error the fd is closed; the next write reopens the file,
so the log heals by itself once space returns. A log deleted or moved away
by someone else (an admin, logrotate) is noticed within a second and
recreated, so lines never go to an unlinked file.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sys
import threading
import time
from typing import Any, TextIO

from agtap.call import Call
from agtap.sinks.fsutil import GROUP, FailureLog, open_append

log = logging.getLogger(__name__)

REOPEN_CHECK_S = 1.0  # how often to notice that the log was deleted or rotated by someone else

# JSON escapes C0 itself; with ensure_ascii=False DEL, C1 (\x9b is CSI on some
# terminals), U+2028/2029 and the bidi overrides/isolates (which reorder what a
# terminal shows) would pass raw into a `tail -f`: escape them too.
_UNSAFE_CHARS = {c: f"\\u{c:04x}" for c in [*range(0x7F, 0xA0), 0x2028, 0x2029, *range(0x202A, 0x202F),
                                             *range(0x2066, 0x206A)]}


def event_line(call: Call) -> bytes:
    """The JSONL line for `call`: compact UTF-8 JSON, terminal-safe, ending in a newline."""
    d = call.to_dict()
    try:
        text = json.dumps(d, ensure_ascii=False, separators=(",", ":")).translate(_UNSAFE_CHARS)
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        # A lone surrogate (e.g. a surrogateescape-decoded name) is not UTF-8: fall back to \u escapes.
        return json.dumps(d, ensure_ascii=True, separators=(",", ":")).encode("ascii") + b"\n"


class JsonlSink:
    name = "jsonl"

    def __init__(
        self,
        path: str | None,
        max_size_mb: float,
        max_files: int,
        stdout: bool = False,
        *,
        group: str | None = GROUP,
        out: TextIO | None = None,
    ):
        """`path` None writes stdout only. `max_files` rotated files are kept (path.1 newest)."""
        self.path = path
        self.max_size = max(int(max_size_mb * 1024 * 1024), 1)
        self.max_files = max(int(max_files), 0)
        self.stdout = stdout
        self.group = group
        self._out = out
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._ino: tuple[int, int] | None = None
        self._next_check = 0.0
        self._size = 0
        self._lines = 0
        self._bytes = 0
        self._rotations = 0
        self._short_writes = 0
        self._errors = FailureLog(log, f"writing event log {path}")
        self._stdout_errors = FailureLog(log, "writing events to stdout")
        if path is not None:
            try:
                self._open()
            except OSError as e:
                # Unsafe paths and full disks are reported, not fatal: the next write retries.
                self._errors.failed(e)

    def _open(self) -> None:
        fd = open_append(self.path, group=self.group)
        st = os.fstat(fd)
        self._size, self._ino = st.st_size, (st.st_dev, st.st_ino)
        self._fd = fd

    def _replaced(self) -> bool:
        """True when the log was removed or moved away by someone else (checked at most once a second)."""
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + REOPEN_CHECK_S
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return True
        return (st.st_dev, st.st_ino) != self._ino

    def _close_fd(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def _rotate(self) -> None:
        """events.jsonl -> .1 -> .2 ... -> .max_files; the oldest is dropped."""
        self._close_fd()
        if self.max_files == 0:
            os.unlink(self.path)
        else:
            # Shift only the files that exist; renaming onto .max_files drops the oldest.
            existing = 0
            while existing < self.max_files and os.path.lexists(f"{self.path}.{existing + 1}"):
                existing += 1
            for n in range(min(existing, self.max_files - 1), 0, -1):
                os.rename(f"{self.path}.{n}", f"{self.path}.{n + 1}")
            os.rename(self.path, f"{self.path}.1")
        self._rotations += 1
        self._open()

    def _write_file(self, line: bytes) -> None:
        if self._fd is not None and self._replaced():
            self._close_fd()
        if self._fd is None:
            self._open()
        if self._size > 0 and self._size + len(line) > self.max_size:
            self._rotate()
        before = self._size
        try:
            n = os.write(self._fd, line)
        except OSError:
            self._close_fd()
            raise
        if n != len(line):
            # Disk filled mid-line: take the partial line back off so the file stays whole lines.
            self._short_writes += 1
            try:
                os.ftruncate(self._fd, before)
            finally:
                self._close_fd()
            raise OSError(errno.ENOSPC, f"short write ({n} of {len(line)} bytes)")
        self._size += n

    def write(self, call: Call) -> None:
        try:
            line = event_line(call)
        except Exception as e:  # never raise out of a sink
            self._errors.failed(e)
            return
        with self._lock:
            if self.path is not None:
                try:
                    self._write_file(line)
                    self._lines += 1
                    self._bytes += len(line)
                except OSError as e:
                    self._errors.failed(e)
            if self.stdout:
                try:
                    out = self._out or sys.stdout
                    raw = getattr(out, "buffer", None)
                    if raw is not None:  # bytes: a C/ASCII locale must not make UTF-8 lines fail
                        out.flush()
                        raw.write(line)
                        raw.flush()
                    else:
                        out.write(line.decode("utf-8"))
                        out.flush()
                except (OSError, ValueError) as e:  # closed or broken stdout
                    self._stdout_errors.failed(e)

    def clean(self) -> dict[str, int]:
        """agtapctl clean truncates the log in place: the size that rotation counts starts at 0."""
        with self._lock:
            self._size = 0
        return {}

    def close(self) -> None:
        with self._lock:
            self._close_fd()

    def stats(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "lines": self._lines,
            "bytes": self._bytes,
            "rotations": self._rotations,
            "short_writes": self._short_writes,
            "write_errors": self._errors.count,
            "stdout_errors": self._stdout_errors.count,
        }
