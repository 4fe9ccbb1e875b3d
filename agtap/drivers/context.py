"""What a connection driver is given by whoever runs it (the Pipeline), and nothing else of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from agtap.call import Call
    from agtap.capture.connid import ConnId
    from agtap.providers.mcp import McpSession


@dataclass(slots=True, frozen=True)
class DriverContext:
    limits: Any                                      # pipeline.Limits: max_head, max_body, decompress_cap
    stats: Any                                       # pipeline.PipelineStats: the counters drivers add to
    emit: Callable[["Call"], None]                   # a finished call
    ignore_conn: Callable[["ConnId"], None]          # no interest in the connection's current exchange:
                                                     # the capture layer may stop copying it
    shared_session: Callable[[str], "McpSession"]    # the MCP session of an Mcp-Session-Id, across connections
    ignore_stream: Callable[["ConnId", int], None] = lambda conn, stream_id: None
                                                     # HTTP/2: no interest in this stream (its request matched no
                                                     # provider): the kernel may stop copying its DATA
