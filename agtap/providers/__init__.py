"""providers: protocol messages to Call records, one small module per API.

Each LLM provider module (anthropic, openai_chat, openai_responses, gemini)
has the same entry points:

    match(req) -> bool                 is this request ours? (path and body, never the host,
                                       so OpenAI-compatible local servers and proxies match)
    begin(req, call) -> state          fill what the request says (model, streaming, operation)
    feed(state, call, event, obj, ts)  one response message: a parsed JSON body (event None),
                                       one SSE event (event name, parsed data or None), or one
                                       element of a streamed JSON array; ts is its chunk's time
    stream_end(event, data) -> bool    is this SSE event the documented end of the stream? (a
                                       stream that ended so is complete even if the client
                                       closed before the chunked terminator)
    finish(state, call)                the response ended (or was cut short): settle the fields

`mcp` is different because JSON-RPC is not request/response per exchange:
`McpSession` pairs requests and responses by id per connection, in both
directions, over stdio or Streamable HTTP.

The connection drivers that use these live here too: `httpconn` (HTTP/1.1
exchanges: pairing, decoding, provider dispatch) and `ipcconn` (MCP stdio).
`pricing` turns tokens into cost_usd from agtap/data/prices.json.
"""
