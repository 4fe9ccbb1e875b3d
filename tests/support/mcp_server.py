"""A tiny MCP server over stdio, built with the official `mcp` SDK (mcp 2.x: MCPServer,
formerly FastMCP). The MCP clients in tests/clients launch it as their child process.

Tools: add(a, b) -> a + b;  echo(text) -> text;  big(n) -> n characters (large frames);
fail(message) -> a tool error (isError: true);  sleep(seconds) -> "slept" (latency tests).

For tests that count what the tracer saw against what the server got (issue 19):
  AGTAP_MCP_LOG=FILE     append every JSON-RPC message read from stdin to FILE, one JSON
                         line each, {"pid": <this process>, "message": <the message>}
  AGTAP_MCP_DELAY=SECS   sleep that long before reading stdin (a server slow to start:
                         the client's first messages wait in the pipe)
"""

from __future__ import annotations

import json
import os
import sys
import time

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server

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


class _LoggedStdin:
    """stdin as the SDK reads it (line by line, as text), each line also logged."""

    def __init__(self, raw, log_path: str):
        self.raw = raw
        self.log = open(log_path, "a", encoding="utf-8")

    def readline(self, *_args) -> str:
        line = self.raw.readline()
        if line.strip():
            try:
                msg = json.loads(line)
            except ValueError:
                msg = {"unparsed": line.decode("utf-8", "replace")}
            self.log.write(json.dumps({"pid": os.getpid(), "message": msg}) + "\n")
            self.log.flush()
        return line.decode("utf-8")


async def _serve_logged(log_path: str) -> None:
    stdin = anyio.wrap_file(_LoggedStdin(sys.stdin.buffer, log_path))
    async with stdio_server(stdin=stdin) as (read_stream, write_stream):
        low = server._lowlevel_server
        await low.run(read_stream, write_stream, low.create_initialization_options())


if __name__ == "__main__":
    time.sleep(float(os.environ.get("AGTAP_MCP_DELAY", "0")))
    if os.environ.get("AGTAP_MCP_LOG"):
        anyio.run(_serve_logged, os.environ["AGTAP_MCP_LOG"])
    else:
        server.run("stdio")
