"""Real agents as test clients (issue 19): Gemini CLI and Bun, pinned from npm (setup/agents.txt).

Gemini CLI runs against the local TLS fake API with five MCP stdio servers in its settings,
each started a different way an agent starts one: the Python SDK server directly; the Node
SDK server behind `sh -c`, and through `npx` (npm exec: node, then `sh -c`, then the
server); the Python server sleeping 300 ms before it reads stdin; and the Python server
behind `sh -c 'sleep 0.3; exec ...'`, so Gemini writes `initialize` before the server has
even exec'd. The fake API asks for one tool of each server, then answers in text.
Each server logs every JSON-RPC message it read (AGTAP_MCP_LOG). The tracer must show every
LLM request the fake API served as exactly one llm_call, and every message a server read as
exactly one mcp_call, `initialize` included, on a conversation named ipc:<client>:<server>.
Claude Code (a Bun binary with BoringSSL, tests/support/npmbins.py) does the same with the
Python server from its --mcp-config; its MCP client speaks the newer protocol that opens
with server/discover instead of initialize.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from pathlib import Path

from agtap.capture.chunk import Chunk
from agtap.capture.connid import IPC, TLS, ConnId
from agtap.pipeline import Pipeline
from agtap.providers.pricing import PriceTable
from tests.support import Reply, ToolCall, npmbins
from tests.support.agents import GEMINI_MODEL, bun_bin, gemini_bin, gemini_env
from tests.support.clients import PYTHON
from tests.support.routes import GEMINI_PATH

REPO = Path(__file__).resolve().parents[2]
PY_SERVER = str(REPO / "tests" / "support" / "mcp_server.py")
CLIENTS = str(REPO / "tests" / "clients")
NODE_SERVER = str(REPO / "tests" / "clients" / "mcp-test-server" / "server.mjs")


def calls_of(items, keep) -> list:
    """The calls a fresh Pipeline makes of the recorded items keep() selects (as the daemon would)."""
    calls: list = []
    p = Pipeline(calls.append, prices=PriceTable(override=None))
    for it in items:
        if keep(it):
            p.feed(it)
    p.flush()   # what is still open is emitted incomplete: the checks see it
    return calls


def server_log(path: Path) -> tuple[int, list[str]]:
    """(the server's pid, the methods of the messages it read, in order)."""
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    pids = {x["pid"] for x in lines}
    assert len(pids) == 1, pids
    return pids.pop(), [x["message"]["method"] for x in lines if "method" in x["message"]]


def check_conversations(items, client: int, logs: dict[str, Path], first: str | None = "initialize") -> dict[str, list]:
    """Every message each server read is one mcp_call of the client, on ipc:<client>:<server>."""
    convs = {i.conn for i in items if isinstance(i, Chunk) and i.conn.kind == IPC and i.conn.pid == client}
    out = {}
    for name, log in logs.items():
        server, methods = server_log(log)
        assert first is None or methods[0] == first, (name, methods)
        conn = ConnId.ipc(client, server)
        assert conn in convs, (name, conn, convs)
        calls = calls_of(items, lambda i, c=conn: i.conn == c)
        # what the server itself sent (a notification, a request of its own) is one event each too
        written = b"".join(i.data for i in items if isinstance(i, Chunk) and i.conn == conn and i.pid == server)
        own = [m["method"] for m in map(json.loads, written.splitlines()) if "method" in m]
        assert Counter(c.model for c in calls) == Counter(methods + own), (name, [c.model for c in calls], methods, own)
        assert all(c.kind == "mcp_call" and c.pid == client for c in calls), name
        out[name] = calls
    assert len(convs) == len(logs), convs   # no conversation split in two, none named after a wrapper
    return out


def test_gemini_cli_with_mcp_servers_started_five_ways(tracer_run, fake_api, tmp_path):
    logs = {n: tmp_path / f"{n}.log" for n in ("pysdk", "nodesh", "nodenpx", "pyslow", "pylate")}
    servers = {
        "pysdk": {"command": PYTHON, "args": [PY_SERVER]},
        "nodesh": {"command": "/bin/sh", "args": ["-c", 'node "$0"; exit $?', NODE_SERVER]},
        "nodenpx": {"command": "npx", "args": ["--no-install", "agtap-mcp-test-server"], "cwd": CLIENTS},
        "pyslow": {"command": PYTHON, "args": [PY_SERVER], "env": {"AGTAP_MCP_DELAY": "0.3"}},
        "pylate": {"command": "/bin/sh", "args": ["-c", 'sleep 0.3; exec "$0" "$@"', PYTHON, PY_SERVER]},
    }
    for name, cfg in servers.items():
        cfg["env"] = {**cfg.get("env", {}), "AGTAP_MCP_LOG": str(logs[name])}
        cfg["trust"] = True
    tools = [ToolCall("mcp_pysdk_add", {"a": 2, "b": 3}), ToolCall("mcp_nodesh_add", {"a": 4, "b": 5}),
             ToolCall("mcp_nodenpx_echo", {"text": "npx"}), ToolCall("mcp_pyslow_echo", {"text": "slow"}),
             ToolCall("mcp_pylate_echo", {"text": "late"})]
    fake_api.script(Reply(route=":streamGenerateContent", text="", tool_calls=tools, input_tokens=900, output_tokens=40),
                    Reply(route=":streamGenerateContent", text="All five tools answered.", input_tokens=1000,
                          output_tokens=6))
    env = gemini_env(tmp_path / "home", fake_api.base_url, fake_api.certs.ca, servers)
    rec = tracer_run()
    proc = subprocess.Popen([str(gemini_bin()), "-p", "Use each of the five tools once.", "--yolo", "-m", GEMINI_MODEL],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "All five tools answered." in out, (out, err)
    client = proc.pid

    served = [ex for ex in fake_api.wait_for(2) if GEMINI_PATH.match(ex.path)]
    answers = served[-1].json()["contents"][-1]["parts"]
    got = {p["functionResponse"]["name"]: json.dumps(p["functionResponse"]["response"]) for p in answers}
    for name, want in zip(got, ("5", "9", "npx", "slow", "late")):
        assert want in got[name], (name, got[name])

    def mine(i):
        return (isinstance(i, Chunk) and i.pid == client) or i.conn.pid == client
    rec.quiesce(mine)
    items = rec.stop(settle=0)

    llm = calls_of(items, lambda i: i.conn.kind == TLS and i.conn.pid == client)
    assert len(llm) == len(served), ([c.model for c in llm], [ex.path for ex in served])
    # any call of its own (a classifier, a check) is counted like the rest; the two scripted ones stream
    assert sorted(c.model for c in llm) == sorted(GEMINI_PATH.match(ex.path).group(1) for ex in served)
    assert all(c.kind == "llm_call" and c.provider == "google" and not c.incomplete for c in llm)
    assert [(c.input_tokens, c.output_tokens) for c in llm if c.streaming] == [(900, 40), (1000, 6)]
    assert {t.name for t in tools} <= set(next(c for c in llm if c.streaming).tools)

    calls = check_conversations(items, client, logs)
    for name, tool in zip(logs, tools):
        [call] = [c for c in calls[name] if c.model == "tools/call"]
        assert call.tools == [tool.name.split("_", 2)[2]] and not call.incomplete, call.to_dict()


def test_bun_spawning_an_mcp_server(tracer_run, tmp_path):
    """Bun's own child_process (not node's libuv) runs the Node SDK client, which spawns the Python
    SDK server: initialize, notifications/initialized, tools/list, tools/call add(2, 3)."""
    log = tmp_path / "server.log"
    rec = tracer_run()
    proc = subprocess.Popen([str(bun_bin()), str(REPO / "tests" / "clients" / "mcp_client.mjs"), "--python", PYTHON],
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AGTAP_MCP_LOG": str(log)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    [result] = json.loads(out.strip().splitlines()[-1])["results"]
    assert result["text"] == "5", result
    client = proc.pid
    server, methods = server_log(log)
    assert result["server_pid"] == server and methods[0] == "initialize"
    rec.quiesce(lambda i: i.conn.kind == IPC and i.conn.pid == client)
    items = rec.stop(settle=0)
    check_conversations(items, client, {"python": log})


def test_claude_code_with_an_mcp_server_from_its_mcp_config(tracer_run, fake_api, tmp_path):
    """Claude Code (Bun, BoringSSL; pinned in tests/support/npmbins.py) with the Python SDK server
    from --mcp-config: asks for its tool once, then answers in text."""
    log = tmp_path / "server.log"
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"pysdk": {"command": PYTHON, "args": [PY_SERVER],
                                                           "env": {"AGTAP_MCP_LOG": str(log)}}}}))
    fake_api.script(Reply(text="", tool_calls=[ToolCall("mcp__pysdk__add", {"a": 2, "b": 3})], input_tokens=700,
                          output_tokens=30),
                    Reply(text="The sum is 5.", input_tokens=800, output_tokens=5))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "TERM": "dumb",
           "ANTHROPIC_API_KEY": "agtap-fake-claude-code-key", "ANTHROPIC_BASE_URL": fake_api.base_url,
           "NODE_EXTRA_CA_CERTS": str(fake_api.certs.ca), "DISABLE_TELEMETRY": "1", "DISABLE_AUTOUPDATER": "1",
           "DISABLE_ERROR_REPORTING": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
    (tmp_path / "home").mkdir()
    rec = tracer_run()
    binary = npmbins.claude()
    # BoringSSL is located in a binary when it is first exec'd, off the capture path: a first
    # run's first requests can go by before the probes are on (test_boringssl.py does the same).
    # `claude -p` with no prompt waits on stdin: alive until the tracer says it attached.
    waiting = subprocess.Popen([str(binary), "-p"], env=env, cwd=tmp_path, stdin=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not any(f"attached: {binary}" in line for line in rec.stderr):
            assert time.monotonic() < deadline, "".join(rec.stderr)
            time.sleep(0.2)
    finally:
        waiting.kill()
        waiting.wait()
    # as root Claude Code refuses --dangerously-skip-permissions: allow the one tool by name
    proc = subprocess.Popen([str(binary), "-p", "Add 2 and 3 with the tool.", "--mcp-config", str(config),
                             "--allowedTools", "mcp__pysdk__add"],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "The sum is 5." in out, (out, err)
    client = proc.pid
    served = [ex for ex in fake_api.wait_for(2) if ex.path == "/v1/messages"]

    rec.quiesce(lambda i: (isinstance(i, Chunk) and i.pid == client) or i.conn.pid == client)
    items = rec.stop(settle=0)
    llm = calls_of(items, lambda i: i.conn.kind == TLS and i.conn.pid == client)
    assert len(llm) == len(served), ([c.model for c in llm], len(served))
    assert all(c.kind == "llm_call" and c.provider == "anthropic" and not c.incomplete for c in llm)
    assert [(c.input_tokens, c.output_tokens) for c in llm][-2:] == [(700, 30), (800, 5)]
    [calls] = check_conversations(items, client, {"pysdk": log}, first=None).values()
    [call] = [c for c in calls if c.model == "tools/call"]
    assert call.tools == ["add"] and not call.incomplete
