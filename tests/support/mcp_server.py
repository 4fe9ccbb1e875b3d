"""A tiny MCP server over stdio, built with the official `mcp` SDK (mcp 2.x: MCPServer,
formerly FastMCP). The MCP clients in tests/clients launch it as their child process.

Tools: add(a, b) -> a + b;  echo(text) -> text;  big(n) -> n characters (large frames);
fail(message) -> a tool error (isError: true);  sleep(seconds) -> "slept" (latency tests).
"""

from __future__ import annotations

import time

from mcp.server.mcpserver import MCPServer

server = MCPServer("agtap-test-server")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
def big(n: int) -> str:
    """Return n characters: for tests of JSON-RPC frames larger than one pipe read."""
    return ("agtap-mcp-" * (n // 10 + 1))[:n]


@server.tool()
def fail(message: str) -> str:
    """Always fails: the result comes back with isError true."""
    raise ValueError(message)


@server.tool()
def sleep(seconds: float) -> str:
    """Answer after `seconds`."""
    time.sleep(seconds)
    return "slept"


if __name__ == "__main__":
    server.run("stdio")
