"""Full request/response bodies, one file per call, with secrets removed, a size cap and retention.

Layout: <dir>/<YYYY-MM-DD>/<call.event_id>.json. The name comes only from agtap's
own hex event id and the UTC date of the call: never from anything a traced
process or an API sent (response ids, models, tool names), so no path
traversal is possible. Each file is written to a temporary name in the same
directory, then renamed: after a crash of the daemon there is either the
whole file or none (a leftover ".*.tmp" is removed at the next start). There
is no fsync, as for the event log: a power loss may lose the newest files,
and a per-call fsync of file and directory cost more than the rest of the
daemon's work per call (measured with py-spy under load).

The sink keeps an index of the files it knows (oldest first, with sizes), so
enforcing the size cap after each write and retention in `prune(now)` needs
no directory scan; the directory is scanned once, at start.
"""

from __future__ import annotations

import base64
import collections
import datetime as _dt
import json
import logging
import os
import re
import stat
import threading
import time
from typing import Any

from agtap.call import Call, CallBodies, is_event_id
from agtap.sinks.fsutil import FILE_MODE, GROUP, FailureLog, ensure_dir, open_file
from agtap.redact import redact_headers, redact_target, scrub_bytes, scrub_text

log = logging.getLogger(__name__)

_DATE_DIR = re.compile(r"\d{4}-\d{2}-\d{2}")


def encode_body(data: bytes) -> tuple[Any, str]:
    """(value, encoding): parsed JSON ("json"), UTF-8 text ("text"), base64 ("base64") or None ("empty")."""
    if not data:
        return None, "empty"
    data = scrub_bytes(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"
    try:
        return json.loads(text), "json"
    except ValueError:
        return text, "text"


def body_document(call: Call, bodies: CallBodies) -> bytes:
    """The stored file's bytes: request and response with headers, target and credentials redacted."""
    req_body, req_enc = encode_body(bodies.request_body)
    resp_body, resp_enc = encode_body(bodies.response_body)
    response: dict[str, Any] = {
        "status": bodies.response_status,
        "headers": [list(h) for h in redact_headers(bodies.response_headers)],
        "body": resp_body,
        "body_encoding": resp_enc,
    }
    if bodies.response_events:
        response["events"] = bodies.response_events
    doc = {
        "event_id": call.event_id,
        "id": call.id,
        "ts": call.ts,
        "provider": call.provider,
        "platform": call.platform,
        "server_address": call.server_address,
        "request": {
            "target": redact_target(bodies.request_target),
            "headers": [list(h) for h in redact_headers(bodies.request_headers)],
            "body": req_body,
            "body_encoding": req_enc,
        },
        "response": response,
    }
    # The bodies were scrubbed as bytes; this pass also covers JSON-RPC events and header
    # values that are not in a secret-named header. ensure_ascii keeps the file plain ASCII.
    return scrub_text(json.dumps(doc, ensure_ascii=True, default=str)).encode("ascii") + b"\n"


class BodiesSink:
    name = "bodies"

    def __init__(self, dir: str, max_store_mb: float, retention_hours: float, *, group: str | None = GROUP):
        self.dir = os.path.abspath(dir)
        self.max_store = int(max_store_mb * 1024 * 1024)
        self.retention_s = retention_hours * 3600.0
        self.group = group
        self._lock = threading.Lock()
        # path -> (written at, size), oldest first
        self._index: collections.OrderedDict[str, tuple[float, int]] = collections.OrderedDict()
        self._total = 0
        self._files_written = 0
        self._removed = 0
        self._too_large = 0
        self._bad_ids = 0
        self._known_dirs: set[str] = set()
        self._errors = FailureLog(log, f"writing bodies under {self.dir}")
        try:
            ensure_dir(self.dir, group=group)
            self._load_index()
        except OSError as e:
            self._errors.failed(e)

    def _load_index(self) -> None:
        """Once at start: index existing files by mtime and remove temp files left by a crash."""
        found = []
        for day in os.listdir(self.dir):
            day_path = os.path.join(self.dir, day)
            if not _DATE_DIR.fullmatch(day) or os.path.islink(day_path) or not os.path.isdir(day_path):
                continue
            for name in os.listdir(day_path):
                p = os.path.join(day_path, name)
                st = os.lstat(p)
                if name.startswith(".") and name.endswith(".tmp"):
                    os.unlink(p)
                elif name.endswith(".json") and os.path.isfile(p) and not os.path.islink(p):
                    found.append((st.st_mtime, p, st.st_size))
        for mtime, p, size in sorted(found):
            self._index[p] = (mtime, size)
            self._total += size

    def _day_dir(self, call: Call) -> str:
        wall = call.wall_start_ns / 1e9 if call.wall_start_ns else time.time()
        day = _dt.datetime.fromtimestamp(wall, tz=_dt.timezone.utc).strftime("%Y-%m-%d")
        path = os.path.join(self.dir, day)
        if path not in self._known_dirs or not _is_real_dir(path):
            ensure_dir(path, group=self.group)
            self._known_dirs.add(path)
        return path

    def _store(self, call: Call, data: bytes) -> str:
        day_dir = self._day_dir(call)
        final = os.path.join(day_dir, f"{call.event_id}.json")
        tmp = os.path.join(day_dir, f".{call.event_id}.tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        try:
            fd = open_file(tmp, flags, FILE_MODE, self.group, parent_checked=True)   # _day_dir checked it
        except FileExistsError:
            os.unlink(tmp)  # a leftover from a failed write: O_EXCL then creates a fresh file
            fd = open_file(tmp, flags, FILE_MODE, self.group, parent_checked=True)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        os.rename(tmp, final)
        return final

    def write(self, call: Call) -> None:
        if call.bodies is None:
            return
        if not is_event_id(call.event_id):
            self._bad_ids += 1
            self._errors.failed(ValueError(f"event id is not agtap's hex id: {call.event_id!r:.80}"))
            return
        try:
            data = body_document(call, call.bodies)
        except Exception as e:
            self._errors.failed(e)
            return
        if len(data) > self.max_store:
            self._too_large += 1
            return
        with self._lock:
            try:
                path = self._store(call, data)
            except Exception as e:  # ENOSPC, EIO, an unsafe path: counted, never raised
                self._errors.failed(e)
                return
            old = self._index.pop(path, None)
            if old:
                self._total -= old[1]
            self._index[path] = (time.time(), len(data))
            self._total += len(data)
            self._files_written += 1
            call.body_path = path
            self._enforce_cap(keep=path)

    def _remove(self, path: str) -> None:
        _, size = self._index.pop(path)
        self._total -= size
        try:
            os.unlink(path)
            self._removed += 1
        except FileNotFoundError:
            pass
        except OSError as e:
            self._errors.failed(e)
        try:
            os.rmdir(os.path.dirname(path))  # only succeeds once the day is empty
            self._known_dirs.discard(os.path.dirname(path))
        except OSError:
            pass

    def _enforce_cap(self, keep: str) -> None:
        while self._total > self.max_store and self._index:
            oldest = next(iter(self._index))
            if oldest == keep:
                break
            self._remove(oldest)

    def prune(self, now: float | None = None) -> int:
        """Remove files older than the retention period; returns how many. Call it periodically."""
        now = time.time() if now is None else now
        cutoff = now - self.retention_s
        removed = 0
        with self._lock:
            while self._index:
                oldest = next(iter(self._index))
                if self._index[oldest][0] >= cutoff:
                    break
                self._remove(oldest)
                removed += 1
        return removed

    def clean(self) -> dict[str, int]:
        """Remove every stored body (agtapctl clean); the index and the total start again at 0."""
        with self._lock:
            n, size = len(self._index), self._total
            while self._index:
                self._remove(next(iter(self._index)))
            self._known_dirs.clear()
        return {"body_files": n, "bytes": size}

    def close(self) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return {
            "dir": self.dir,
            "files": len(self._index),
            "bytes": self._total,
            "files_written": self._files_written,
            "files_removed": self._removed,
            "too_large": self._too_large,
            "bad_ids": self._bad_ids,
            "write_errors": self._errors.count,
        }


def _is_real_dir(path: str) -> bool:
    """A directory, not a symlink to one (else ensure_dir looks again, and refuses a symlink)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False
