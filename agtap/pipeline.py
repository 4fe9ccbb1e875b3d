"""Chunks in, calls out: wire -> providers -> Call, with nothing below it knowing BCC.

This module is the seam the service and `agtap replay` use. The pipeline is
single-threaded and never raises out of `feed`: malformed input becomes a
partial Call with `incomplete_reason` "parse_error: ..." and a counter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from agtap.call import Call
from agtap.capture.chunk import Chunk, ConnClosed


@dataclass(slots=True)
class PipelineStats:
    calls: int = 0
    calls_by_provider: dict[str, int] = field(default_factory=dict)
    calls_by_kind: dict[str, int] = field(default_factory=dict)
    parse_errors: int = 0
    incomplete: int = 0
    conns_open: int = 0
    conns_evicted: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    request_bytes: int = 0
    response_bytes: int = 0


class Pipeline:
    """Feed it Chunk and ConnClosed values in order; it calls `emit(call)` once per finished call.

    `ignore_conn(conn)` is called when a connection's current exchange is of no
    interest (no provider matches the request): the capture layer then stops
    copying its bytes in the kernel until the next request line.
    """

    def __init__(self, emit: Callable[[Call], None], *, ignore_conn: Callable[[str], None] | None = None):
        raise NotImplementedError("filled in by the pipeline work (issue 3)")

    def feed(self, item: Chunk | ConnClosed) -> None: ...

    def expire(self, now_ns: int) -> None:
        """Finish calls on connections idle past their timeout (incomplete)."""

    def flush(self) -> None:
        """At shutdown: finish every open call as incomplete ("shutdown")."""

    stats: PipelineStats
