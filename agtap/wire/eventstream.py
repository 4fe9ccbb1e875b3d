"""AWS event streams (`application/vnd.amazon.eventstream`), decoded incrementally.

Bedrock Runtime's ConverseStream and InvokeModelWithResponseStream answer with
this binary framing: each message is a 12-byte prelude (total length, headers
length, CRC32 of those 8 bytes), typed headers (`:message-type` event |
exception | error, `:event-type`, `:exception-type`, `:content-type`, ...), a
payload and a CRC32 of the whole message.
https://docs.aws.amazon.com/transcribe/latest/dg/streaming-setting-up.html
(the format's description; Bedrock uses the same framing).

The parser is botocore's (`botocore.eventstream.EventStreamBuffer`, Debian's
python3-botocore): AWS's own, checksummed, the one boto3 uses to read these very
streams. It is imported on the first event stream, so a daemon that never sees
Bedrock does not pay its import (17 ms, 3 MB). What this wrapper adds is what a
daemon reading hostile bytes needs on top:

- framing by the prelude's two lengths, so botocore is handed one whole message
  at a time (its own buffer re-slices all it holds after every message);
- a bound: a message whose prelude declares more than `max_message` bytes (or a
  length too small to hold its own framing, which botocore does not check) ends
  the stream with an error instead of being buffered;
- any exception from the parser (bad CRC, unknown header type, duplicate
  header, ...) ends the stream with an error string, never an exception.

After an error the decoder hands out nothing more: there is no resynchronising
inside a length-prefixed binary stream.
"""

from __future__ import annotations

import struct

DEFAULT_MAX_MESSAGE = 16 * 1024 * 1024
_PRELUDE = 12            # total length, headers length, prelude CRC
_FRAMING = _PRELUDE + 4  # ... and the message CRC at the end


class EventMessage:
    """One decoded message: its headers (name -> value) and raw payload bytes."""

    __slots__ = ("headers", "payload", "ts_ns")

    def __init__(self, headers: dict, payload: bytes, ts_ns: int):
        self.headers = headers
        self.payload = payload
        self.ts_ns = ts_ns     # ts of the chunk whose bytes completed the message

    @property
    def message_type(self) -> str:
        """`event`, `exception` or `error` (AWS's three kinds)."""
        t = self.headers.get(":message-type")
        return t if isinstance(t, str) else "event"

    @property
    def name(self) -> str:
        """The event's type, the exception's type, or the error's code."""
        key = {"exception": ":exception-type", "error": ":error-code"}.get(self.message_type, ":event-type")
        v = self.headers.get(key)
        return v if isinstance(v, str) else ""

    @property
    def event_name(self) -> str:
        """What providers are handed as the event: the event type for an event,
        "exception:<type>" / "error:<code>" for AWS's two failure kinds."""
        t = self.message_type
        return self.name if t == "event" else f"{t}:{self.name}"

    def __repr__(self) -> str:
        return f"EventMessage({self.message_type}:{self.name}, {self.payload[:60]!r})"


class EventStreamDecoder:
    """Feed bytes as they arrive; complete messages come out. Bounded by `max_message`."""

    __slots__ = ("_buf", "_parser", "max_message", "error")

    def __init__(self, max_message: int = DEFAULT_MAX_MESSAGE):
        self._buf = bytearray()   # bytes of the message(s) not yet complete
        self._parser = None       # botocore EventStreamBuffer, made on the first message
        self.max_message = max_message
        self.error: str | None = None

    def feed(self, data: bytes, ts_ns: int) -> list[EventMessage]:
        if self.error is not None or not data:
            return []
        buf = self._buf
        buf += data
        out: list[EventMessage] = []
        start = 0
        while len(buf) - start >= _PRELUDE:
            # The two lengths are read here only to know where a message ends and to bound
            # it; botocore checks the prelude's CRC, the message's CRC and parses headers.
            total, headers = struct.unpack_from(">II", buf, start)
            if total < _FRAMING + headers:
                self._fail("bad event stream message: length too small for its framing")
                return out
            if total > self.max_message:
                self._fail("event stream message too large")
                return out
            if len(buf) - start < total:
                break
            msg = self._parse(bytes(buf[start:start + total]))
            if msg is None:
                return out
            out.append(EventMessage(msg.headers, msg.payload, ts_ns))
            start += total
        if start:
            del buf[:start]
        return out

    def _parse(self, message: bytes):
        """One complete message through botocore's parser, or None (and the error) if it fails."""
        if self._parser is None:
            try:
                from botocore.eventstream import EventStreamBuffer   # see the module docstring
            except ImportError:   # installed without its dependencies: `agtap doctor` says so too
                self._fail("botocore is not installed (python3-botocore): event streams are not read")
                return None
            self._parser = EventStreamBuffer()
        try:
            self._parser.add_data(message)
            return next(self._parser)
        except Exception as e:   # a third-party parser on bytes from the wire: any failure is the stream's
            self._fail(f"bad event stream message: {type(e).__name__}")
            return None

    def _fail(self, why: str) -> None:
        self.error = why
        self._buf = bytearray()
        self._parser = None

    def finish(self) -> str | None:
        """End of body: an error if a message was left half-received (or one failed before)."""
        if self.error is None and self._buf:
            self.error = "event stream ends mid-message"
        return self.error
