"""Official `mcp` Python SDK client: launches tests/support/mcp_server.py over stdio
(anyio subprocess, so plain pipes) and runs initialize, tools/list, tools/call add(2, 3).

python tests/clients/py_mcp.py [--wait-go] [--server-python PATH] [--tool NAME --arguments JSON]
Prints {"client": "python-mcp", "pid", "results": [{"server_pid", "tools", "tool", "text", ...}]}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import anyio

from mcp import ClientSession, StdioServerParameters, stdio_client

SERVER = Path(__file__).resolve().parents[1] / "support" / "mcp_server.py"

parser = argparse.ArgumentParser()
parser.add_argument("--wait-go", action="store_true")
parser.add_argument("--server-python", default=sys.executable)
parser.add_argument("--tool", default="add")
parser.add_argument("--arguments", default='{"a": 2, "b": 3}', help="JSON object")
args = parser.parse_args()


def child_pid() -> int | None:
    """The server's pid, from /proc (the SDK does not expose its subprocess)."""
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        children = (task / "children").read_text().split()
        if children:
            return int(children[0])
    return None


async def main() -> dict:
    params = StdioServerParameters(command=args.server_python, args=[str(SERVER)], env=dict(os.environ))
    if args.wait_go:
        print(json.dumps({"ready": os.getpid()}), flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
    async with stdio_client(params) as streams:
        async with ClientSession(*streams) as session:
            init = await session.initialize()
            tools = await session.list_tools()
            result = await session.call_tool(args.tool, json.loads(args.arguments))
            text = "".join(c.text for c in result.content if getattr(c, "type", "") == "text")
            return {"server_pid": child_pid(), "server_name": init.server_info.name,
                    "protocol_version": init.protocol_version,
                    "tools": sorted(t.name for t in tools.tools), "tool": args.tool, "text": text,
                    "structured": result.structured_content, "is_error": bool(result.is_error)}


result = anyio.run(main)
print(json.dumps({"client": "python-mcp", "mode": "session", "pid": os.getpid(), "results": [result]}))
