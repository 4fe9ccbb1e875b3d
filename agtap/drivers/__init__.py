"""drivers: one connection's bytes to provider calls.

Layer order: capture -> wire -> providers -> drivers -> pipeline -> sinks/service.
A driver takes one connection's Chunks (egress and ingress) from the pipeline,
frames them with the `wire` decoders, hands the messages to the `providers`
modules and gives each finished Call to the `emit` callback of its
`DriverContext`; it never sees the Pipeline itself.

    httpconn   HTTP/1.1: two framers (requests, responses), the queue that pairs
               them (keep-alive, pipelining), skipping what no provider wants;
               after `101` to h2c it hands the connection to h2conn
    h2conn     HTTP/2: each stream an exchange (frames and HPACK in wire.http2)
    exchange   one request/response pair on its way to a Call: bounded bodies,
               Content-Encoding, SSE / JSON-array / JSON-body framing, provider
               dispatch (or MCP over Streamable HTTP)
    ipcconn    newline-delimited JSON-RPC on local IPC (MCP stdio)
    context    DriverContext: what the pipeline gives a driver
"""
