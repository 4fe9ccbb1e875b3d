"""`agtap record FILE` / `agtap replay FILE`: chunks as JSON lines.

Line 1: {"agtap_recording": 1, "version", "kernel", "host", "started"}.
Then one object per item: {"type": "chunk", <Chunk fields>, "data": base64}
or {"type": "close", "conn", "ts_ns", "reason"}. Replay needs no root and no
BPF: the same items go through the same pipeline, so a recording is a fixture.

Recordings are meant to be shared (bug reports), so the Recorder masks every
secret (agtap/redact.py: API key headers, cookies, key= parameters, credential-
shaped strings) with '*' byte for byte before it writes a chunk: lengths and
offsets stay as captured and the recording replays the same calls.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import platform
import time
from typing import IO, Iterator

from agtap import __version__
from agtap.capture.chunk import Chunk, ConnClosed, Direction, Transport
from agtap.capture.connid import ConnId
from agtap.redact import StreamMasker

FORMAT_VERSION = 1


class RecordingError(Exception):
    pass


def header() -> dict:
    return {"agtap_recording": FORMAT_VERSION, "version": __version__, "kernel": platform.release(),
            "machine": platform.machine(), "host": platform.node(), "started": time.time(),
            "secrets": "masked"}


def encode(item: Chunk | ConnClosed) -> str:
    if isinstance(item, ConnClosed):
        return json.dumps({"type": "close", "conn": str(item.conn), "ts_ns": item.ts_ns, "reason": item.reason})
    d = {f.name: getattr(item, f.name) for f in dataclasses.fields(item)}
    d["conn"] = str(item.conn)
    d["direction"] = item.direction.value
    d["transport"] = item.transport.value
    d["data"] = base64.b64encode(item.data).decode()
    return json.dumps({"type": "chunk", **d})


def decode(line: str) -> Chunk | ConnClosed:
    d = json.loads(line)
    t = d.pop("type", None)
    if t == "close":
        return ConnClosed(ConnId.parse(d["conn"]), int(d["ts_ns"]), d.get("reason", "closed"))
    if t != "chunk":
        raise RecordingError(f"unknown item type {t!r}")
    d["conn"] = ConnId.parse(d["conn"])
    d["data"] = base64.b64decode(d["data"])
    d["direction"] = Direction(d["direction"])
    d["transport"] = Transport(d["transport"])
    names = {f.name for f in dataclasses.fields(Chunk)}
    return Chunk(**{k: v for k, v in d.items() if k in names})


class Recorder:
    """Writes items as they come, secrets masked; each line is one write, flushed."""

    def __init__(self, path: str):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o640)
        self._f: IO[str] = os.fdopen(fd, "w", encoding="utf-8")
        self._f.write(json.dumps(header()) + "\n")
        self._f.flush()
        self.items = 0
        self._masker = StreamMasker()

    def write(self, item: Chunk | ConnClosed) -> None:
        if isinstance(item, Chunk):
            item = dataclasses.replace(item, data=self._masker.mask((item.conn, item.direction), item.data))
        else:
            self._masker.forget_matching(lambda key: key[0] == item.conn)
        self._f.write(encode(item) + "\n")
        self._f.flush()
        self.items += 1

    def close(self) -> None:
        self._f.close()


def read(path: str) -> Iterator[Chunk | ConnClosed]:
    """The items of a recording, in order. Raises RecordingError on a file that is not one."""
    with open(path, encoding="utf-8") as f:
        first = f.readline()
        try:
            h = json.loads(first)
        except json.JSONDecodeError:
            raise RecordingError(f"{path}: not an agtap recording (first line is not JSON)") from None
        if not isinstance(h, dict) or h.get("agtap_recording") != FORMAT_VERSION:
            raise RecordingError(f"{path}: not an agtap recording of format {FORMAT_VERSION}")
        for n, line in enumerate(f, start=2):
            if not line.strip():
                continue
            try:
                yield decode(line)
            except (ValueError, KeyError, TypeError, RecordingError) as e:
                raise RecordingError(f"{path}:{n}: bad item: {e}") from None
