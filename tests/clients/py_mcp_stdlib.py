"""An MCP stdio session with nothing but Python's standard library: client and server.

python py_mcp_stdlib.py [--wait-go]  the client: starts `py_mcp_stdlib.py --serve` as its child and
                                 runs initialize, notifications/initialized, tools/list and
                                 tools/call add(2, 3) over newline-delimited JSON-RPC on pipes
python py_mcp_stdlib.py --serve      the server (tool: add)
For the container test roots, which have no MCP SDK. The client prints
{"client", "pid", "server_pid", "results": [the tools/call result]}.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

TOOLS = [{"name": "add", "description": "Add two integers.",
          "inputSchema": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                          "required": ["a", "b"]}}]


def serve() -> None:
    for line in sys.stdin:
        msg = json.loads(line)
        if "id" not in msg:
            continue   # a notification: no answer
        method, result = msg["method"], {}
        if method == "initialize":
            result = {"protocolVersion": msg["params"]["protocolVersion"], "capabilities": {"tools": {}},
                      "serverInfo": {"name": "agtap-stdlib-server", "version": "1"}}
        elif method == "tools/list":
            result = {"tools": TOOLS}
        elif method == "tools/call":
            a = msg["params"]["arguments"]
            result = {"content": [{"type": "text", "text": str(a["a"] + a["b"])}], "isError": False}
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}) + "\n")
        sys.stdout.flush()


def client(wait_go: bool) -> None:
    if wait_go:   # print {"ready": pid}, wait for a line on stdin
        print(json.dumps({"ready": os.getpid()}), flush=True)
        sys.stdin.readline()
    server = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)

    def send(msg: dict) -> dict | None:
        server.stdin.write(json.dumps({"jsonrpc": "2.0", **msg}) + "\n")
        server.stdin.flush()
        return json.loads(server.stdout.readline()) if "id" in msg else None

    send({"id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "agtap-stdlib-client", "version": "1"}}})
    send({"method": "notifications/initialized"})
    send({"id": 2, "method": "tools/list", "params": {}})
    answer = send({"id": 3, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 2, "b": 3}}})
    server.stdin.close()
    server.wait(10)
    print(json.dumps({"client": "python-mcp-stdlib", "pid": os.getpid(), "server_pid": server.pid,
                      "results": [answer["result"]]}), flush=True)


if __name__ == "__main__":
    serve() if sys.argv[1:] == ["--serve"] else client("--wait-go" in sys.argv[1:])
