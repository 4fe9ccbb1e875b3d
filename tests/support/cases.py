"""The client matrix end-to-end tests parametrize over, with what the tracer should report.

    @pytest.mark.parametrize("case", LLM_CASES, ids=str)
    def test_llm_call_seen(case, fake_api, tracer):
        fake_api.script(Reply(...))
        run = run_client(case.kind, fake_api, case.mode).check()
        call = tracer.wait_call(pid=run.pid)
        assert (call.provider, call.platform, call.streaming) == (case.provider, case.platform, case.streaming)

`provider` and `operation` use agtap.call's vocabulary (PROVIDERS; operation
chat | responses | generate_content | MCP method); `platform` agtap/providers/platforms.py's.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    kind: str  # tests.support.clients kind
    mode: str
    provider: str
    operation: str
    streaming: bool
    tools: bool = False  # the scripted reply should carry tool calls (mode asks for tools)
    path: str = ""  # the route the request hits on FakeApi
    platform: str = "local"  # where it was served: the fake API is on loopback, Vertex AI named by path

    def __str__(self) -> str:
        return f"{self.kind}:{self.mode}"


_A, _C, _R = "/v1/messages", "/v1/chat/completions", "/v1/responses"
_G, _GS = ":generateContent", ":streamGenerateContent"

LLM_CASES: list[Case] = [
    Case("python-anthropic", "stream", "anthropic", "chat", True, path=_A),
    Case("python-anthropic", "nonstream", "anthropic", "chat", False, path=_A),
    Case("python-anthropic", "tools", "anthropic", "chat", False, tools=True, path=_A),
    Case("python-anthropic", "tools-stream", "anthropic", "chat", True, tools=True, path=_A),
    Case("python-openai", "chat-stream", "openai", "chat", True, path=_C),
    Case("python-openai", "chat", "openai", "chat", False, path=_C),
    Case("python-openai", "chat-tools", "openai", "chat", False, tools=True, path=_C),
    Case("python-openai", "chat-tools-stream", "openai", "chat", True, tools=True, path=_C),
    Case("python-openai", "responses-stream", "openai", "responses", True, path=_R),
    Case("python-openai", "responses", "openai", "responses", False, path=_R),
    Case("python-openai", "responses-tools", "openai", "responses", False, tools=True, path=_R),
    Case("python-gemini", "stream", "google", "generate_content", True, path=_GS),
    Case("python-gemini", "nonstream", "google", "generate_content", False, path=_G),
    Case("python-gemini", "tools", "google", "generate_content", False, tools=True, path=_G),
    Case("node-anthropic", "stream", "anthropic", "chat", True, path=_A),
    Case("node-anthropic", "nonstream", "anthropic", "chat", False, path=_A),
    Case("node-anthropic", "tools", "anthropic", "chat", False, tools=True, path=_A),
    Case("node-anthropic", "tools-stream", "anthropic", "chat", True, tools=True, path=_A),
    Case("node-openai", "chat-stream", "openai", "chat", True, path=_C),
    Case("node-openai", "chat", "openai", "chat", False, path=_C),
    Case("node-openai", "chat-tools", "openai", "chat", False, tools=True, path=_C),
    Case("node-openai", "responses-stream", "openai", "responses", True, path=_R),
    Case("node-openai", "responses", "openai", "responses", False, path=_R),
    Case("curl", "anthropic-stream", "anthropic", "chat", True, path=_A),
    Case("curl", "anthropic", "anthropic", "chat", False, path=_A),
    Case("curl", "openai-chat-stream", "openai", "chat", True, path=_C),
    Case("curl", "openai-chat", "openai", "chat", False, path=_C),
    Case("curl", "responses-stream", "openai", "responses", True, path=_R),
    Case("curl", "gemini-stream", "google", "generate_content", True, path=_GS),
    Case("curl", "gemini-stream-array", "google", "generate_content", True, path=_GS),
    Case("curl", "gemini", "google", "generate_content", False, path=_G),
    Case("python-requests", "anthropic", "anthropic", "chat", False, path=_A),
    Case("python-requests", "openai-chat-stream", "openai", "chat", True, path=_C),
    Case("python-httpx", "anthropic-stream", "anthropic", "chat", True, path=_A),
    Case("python-httpx", "gemini-stream", "google", "generate_content", True, path=_GS),
]

# Vertex AI (platform "vertex_ai"; provider "google" or "anthropic", the API family): kept
# apart from LLM_CASES. Vertex express mode (python-gemini vertex*) uses
# /v1beta1/publishers/google/models/... with no /projects/ in the path; "/publishers/" names it.
_VG, _VGS = "/publishers/google/models/", ":streamGenerateContent"
_VA, _VAS = ":rawPredict", ":streamRawPredict"
_V = "vertex_ai"
VERTEX_CASES: list[Case] = [
    Case("python-anthropic", "vertex-stream", "anthropic", "chat", True, path=_VAS, platform=_V),
    Case("python-anthropic", "vertex", "anthropic", "chat", False, path=_VA, platform=_V),
    Case("python-gemini", "vertex-stream", "google", "generate_content", True, path=_VGS, platform=_V),
    Case("python-gemini", "vertex", "google", "generate_content", False, path=_VG, platform=_V),
    Case("curl", "vertex-gemini-stream", "google", "generate_content", True, path=_VGS, platform=_V),
    Case("curl", "vertex-anthropic-stream", "anthropic", "chat", True, path=_VAS, platform=_V),
]

# Other ways the same providers are reached (and their keys sent): Azure OpenAI's `api-key`
# header and deployments path (which names the platform, also on loopback); Gemini's key as
# a `?key=` query parameter.
OTHER_CASES: list[Case] = [
    Case("python-openai", "azure-chat-stream", "openai", "chat", True, path="/openai/deployments/",
         platform="azure_openai"),
    Case("python-openai", "azure-chat", "openai", "chat", False, path="/openai/deployments/", platform="azure_openai"),
    Case("curl", "gemini-query-key", "google", "generate_content", False, path="?key="),
]

# MCP over stdio: python-mcp uses plain pipes (anyio subprocess), node-mcp and node-jsonrpc
# use libuv socketpairs. Each does initialize, tools/list, tools/call add(2, 3).
MCP_CASES: list[Case] = [
    Case("python-mcp", "session", "mcp", "tools/call", False, tools=True),
    Case("node-mcp", "session", "mcp", "tools/call", False, tools=True),
    Case("node-jsonrpc", "session", "mcp", "tools/call", False, tools=True),
]
