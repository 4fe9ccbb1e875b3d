"""AWS event-stream framing, written (the tracer only reads it): what the fake Bedrock sends.

Message layout (https://docs.aws.amazon.com/transcribe/latest/dg/streaming-setting-up.html):
  total length (u32 BE) | headers length (u32 BE) | CRC32 of those 8 bytes (u32 BE)
  headers: name length (u8) | name | type 7 = string | value length (u16 BE) | value
  payload | CRC32 of everything before it (u32 BE)
boto3 (botocore.eventstream) reads what this writes in the bpf tier, and
tests/unit/test_wire_eventstream.py checks it against botocore's decoder too.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from typing import Any


def message(headers: dict[str, str], payload: bytes) -> bytes:
    hb = b"".join(struct.pack(">B", len(n.encode())) + n.encode() + b"\x07" + struct.pack(">H", len(v.encode()))
                  + v.encode() for n, v in headers.items())
    total = 12 + len(hb) + len(payload) + 4
    prelude = struct.pack(">II", total, len(hb))
    head = prelude + struct.pack(">I", zlib.crc32(prelude)) + hb + payload
    return head + struct.pack(">I", zlib.crc32(head))


def event(event_type: str, payload: Any) -> bytes:
    """An `event` message with a JSON payload (ConverseStream's events)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return message({":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}, body)


def chunk(inner: Any) -> bytes:
    """An InvokeModelWithResponseStream `chunk`: {"bytes": base64(JSON)} (plus Bedrock's padding `p`)."""
    raw = json.dumps(inner, separators=(",", ":")).encode()
    return event("chunk", {"bytes": base64.b64encode(raw).decode(), "p": "abcdefgh"})


def exception(exception_type: str, text: str) -> bytes:
    body = json.dumps({"message": text}).encode()
    return message({":exception-type": exception_type, ":content-type": "application/json",
                    ":message-type": "exception"}, body)
