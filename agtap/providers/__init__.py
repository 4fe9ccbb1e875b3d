"""providers: protocol messages to Call records, one small module per API.

Each LLM provider module (anthropic, openai_chat, openai_responses, openai_embeddings,
gemini, gemini_embeddings, ollama, bedrock_converse, bedrock_invoke) has the same entry
points, declared by `base.LlmProvider`:

    NAME                               the provider name calls carry
    STREAM_JSON_ARRAY                  a streamed answer without SSE is one JSON array whose
                                       elements arrive over time (Gemini), not one JSON body
    match(req) -> bool                 is this request ours? (path and body, never the host,
                                       so OpenAI-compatible local servers and proxies match)
    begin(req, call) -> state          fill what the request says (model, streaming, operation)
    fast(state, call, event, data, ts) -> bool
                                       one SSE event before its JSON is parsed: True if the
                                       provider needed nothing more from it (a text delta only
                                       moves TTFT on), so the parse is skipped
    feed(state, call, event, obj, ts)  one response message: a parsed JSON body (event None),
                                       one SSE event (event name, parsed data or None), one
                                       element of a streamed JSON array, one NDJSON line (event
                                       None), or one AWS event-stream message (event: its
                                       :event-type, or "exception:<type>" / "error:<code>");
                                       ts is its chunk's time
    stream_end(event, data) -> bool    is this SSE event (NDJSON line, event-stream message)
                                       the documented end of the stream? (a
                                       stream that ended so is complete even if the client
                                       closed before the chunked terminator)
    finish(state, call)                the response ended (or was cut short): settle the fields

`mcp` is different because JSON-RPC is not request/response per exchange:
`McpSession` pairs requests and responses by id per connection, in both
directions, over stdio or Streamable HTTP.

The connection drivers that frame bytes and call these entry points are in
`agtap.drivers` (the layer below). `pricing` turns tokens into cost_usd from
agtap/data/prices.json.
"""
