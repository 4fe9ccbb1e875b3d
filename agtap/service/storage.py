"""Captured data on disk, as the service reads and removes it (the sinks write it).

Bodies live under `bodies_dir` as <YYYY-MM-DD>/<call id>.json (agtap/sinks/bodies.py).
A caller names a call by its id only: the id is checked, then looked up; a
path from the caller is never opened, and a found path must resolve inside
`bodies_dir`.
"""

from __future__ import annotations

import gzip
import logging
import os

from agtap.call import EVENT_ID_FORMAT, is_event_id
from agtap.config import Config
from agtap.service.errors import Failed, InvalidArgument, NotFound

MAX_BODY_BYTES = 32 * 1024 * 1024      # well under the bus's 128 MiB message limit


def read_body(bodies_dir: str, event_id: str, known_path: str | None = None) -> str:
    if not is_event_id(event_id):
        raise InvalidArgument(f"event id {event_id!r:.80}: must be {EVENT_ID_FORMAT}, as in the event's \"event_id\"")
    root = os.path.realpath(bodies_dir)
    path = known_path or find_body(root, event_id)
    if not path:
        raise NotFound(f"no stored bodies for call {event_id} (never stored, removed by retention, or cleaned)")
    real = os.path.realpath(path)
    if os.path.commonpath([root, real]) != root or not os.path.isfile(real):
        raise NotFound(f"no stored bodies for call {event_id}")
    try:
        with open(real, "rb") as f:
            raw = f.read(MAX_BODY_BYTES + 1)
        if real.endswith(".gz"):
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise NotFound(f"no stored bodies for call {event_id} (removed)") from None
    except OSError as e:
        raise Failed(f"reading the bodies of call {event_id}: {e.strerror or e}") from e
    if len(raw) > MAX_BODY_BYTES:
        raise Failed(f"bodies of call {event_id} are over {MAX_BODY_BYTES >> 20} MiB; read the file as root")
    return raw.decode("utf-8", "replace")


def find_body(root: str, event_id: str) -> str | None:
    """A file named after the id in `root` or one level below it (the day directories)."""
    try:
        for top in os.scandir(root):
            if top.name.startswith(event_id) and top.is_file(follow_symlinks=False):
                return top.path
            if top.is_dir(follow_symlinks=False):
                for e in os.scandir(top.path):
                    if e.name.startswith(event_id) and e.is_file(follow_symlinks=False):
                        return e.path
    except OSError:
        return None
    return None


def remove_captured(config: Config, log: logging.Logger) -> dict[str, int]:
    """Delete every body file (and emptied day directories), the rotated event logs, and truncate the log."""
    removed = {"body_files": 0, "log_files": 0, "bytes": 0}
    root = config.bodies_dir
    if root and os.path.isdir(root):
        for dirpath, _dirs, filenames in os.walk(root, topdown=False):
            for name in filenames:
                p = os.path.join(dirpath, name)
                try:
                    removed["bytes"] += os.lstat(p).st_size
                    os.unlink(p)
                    removed["body_files"] += 1
                except OSError as e:
                    log.warning("clean: %s: %s", p, e.strerror)
            if dirpath != root:
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass
    path = config.event_log
    if path:
        for i in range(1, max(config.max_log_files, 0) + 50):
            for p in (f"{path}.{i}", f"{path}.{i}.gz"):
                try:
                    removed["bytes"] += os.lstat(p).st_size
                    os.unlink(p)
                    removed["log_files"] += 1
                except FileNotFoundError:
                    pass
                except OSError as e:
                    log.warning("clean: %s: %s", p, e.strerror)
        try:
            removed["bytes"] += os.lstat(path).st_size
            os.truncate(path, 0)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise Failed(f"clean: truncating {path}: {e.strerror}") from e
    return removed
