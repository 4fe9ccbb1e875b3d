"""wire: per-connection byte streams back into protocol messages.

Nothing here knows about LLM providers or the Call record. Each decoder is
incremental (feed it bytes as they arrive, in pieces of any size), bounded
(every buffer has a cap, and what goes past it is counted, not kept) and cheap
on the hot path (bytes.find/split, no per-byte Python loops):

- http1     HTTP/1.1 message framing for one direction of one connection:
            heads, Content-Length / chunked / until-close bodies, 1xx interim
            responses, and resynchronisation at the next start line after garbage.
- encoding  Content-Encoding undone incrementally (gzip, deflate, br, zstd)
            with a cap on decompressed output.
- sse       text/event-stream events (LF/CRLF/CR, multi-line data, comments).
- ndjson    newline-delimited messages (MCP stdio JSON-RPC), bounded lines.
- jsonarray the elements of a streamed top-level JSON array (Gemini's default
            streamGenerateContent), each as soon as it is complete.

Every message a decoder hands out carries the monotonic ts_ns of the chunk
that completed it, so latency and time-to-first-token are measured at the
probe, not when Python got round to it.
"""
