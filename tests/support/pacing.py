"""What a FakeApi answer sends and when, whatever the framing carries it.

Both servers answer from here: fakeapi.py frames the bytes as HTTP/1.1 (chunks of a chunked
body), h2serve.py as HTTP/2 DATA frames. So Reply.gzip, Reply.event_delay, Reply.drop_after
and Reply.batch mean the same on both, and only the framing differs.
"""

from __future__ import annotations

import gzip
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from .exchange import Exchange
from .reply import Planned, Reply


def choose(ex: Exchange, planned: Planned, reply: Reply) -> tuple[bool, bool]:
    """(streaming, gzipped) for this answer; records status and gzip on the exchange.

    /echo and /bulk (no scripted reply) are never compressed: byte-exact capture tests compare
    them as sent. Real APIs gzip whole bodies, not streams, unless Reply.gzip says otherwise."""
    streaming = planned.events is not None and planned.status == 200
    accepts_gzip = "gzip" in (ex.header("accept-encoding") or "").lower()
    use_gzip = accepts_gzip and ex.reply is not None and (
        reply.gzip is True or (reply.gzip is None and not streaming))
    ex.gzipped, ex.status = use_gzip, planned.status
    return streaming, use_gzip


def whole_body(ex: Exchange, planned: Planned, use_gzip: bool) -> bytes:
    """A non-streamed answer's bytes on the wire (records the plain body on the exchange)."""
    body = planned.body or b"".join(planned.events or [])
    ex.response_body = body
    return gzip.compress(body, mtime=0) if use_gzip else body


@dataclass
class Batch:
    """One write of a streamed answer."""

    pieces: list[bytes]  # a piece per event (its gzip output when gzipped), then the gzip trailer
    events: list[bytes]  # the events these pieces carry: the sender adds them to ex.events once sent
    last: bool  # the final batch (maybe empty): after it, the end of the body or (ex.dropped) the cut


def batches(ex: Exchange, planned: Planned, reply: Reply, use_gzip: bool) -> Iterator[Batch]:
    """The streamed answer's events, paced: Reply.event_delay between events, Reply.batch events
    per write, stopping (ex.dropped) after Reply.drop_after events. The sleeps happen while the
    caller asks for the next batch, so it sends each one as soon as it has it."""
    # gzip a stream the way servers do: one deflate stream, flushed after every event.
    comp = zlib.compressobj(wbits=31) if use_gzip else None
    pieces: list[bytes] = []
    events: list[bytes] = []
    for i, event in enumerate(planned.events or []):
        if reply.drop_after is not None and i >= reply.drop_after:
            ex.dropped = True
            break
        if i and reply.event_delay:
            time.sleep(reply.event_delay)
        if not ex.ns_first_event:
            ex.ns_first_event = time.monotonic_ns()
        pieces.append(comp.compress(event) + comp.flush(zlib.Z_SYNC_FLUSH) if comp else event)
        events.append(event)
        if len(events) >= max(1, reply.batch):
            yield Batch(pieces, events, last=False)
            pieces, events = [], []
    if comp and not ex.dropped:
        pieces.append(comp.flush())
    yield Batch(pieces, events, last=True)
