"""AWS Bedrock, Azure OpenAI, Ollama and embeddings on the real kernel, from their official clients.

One daemon for the module. Each test runs one client process that makes a list of calls
(non-streamed, streamed, tool call, error...) against the local fake API, scripted call by
call, and checks that the daemon logged exactly one event per call, in order, with the
scripted values. Values are what the Reply scripts and what each API's documented wire
format says they become (tests/support/shapes_*.py).
"""

from __future__ import annotations

import pytest

from tests.support import Reply, ToolCall, run_client
from tests.support.clients import run_calls

CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"
WEATHER = [ToolCall("get_weather", {"city": "Paris"})]
TOKENS = dict(input_tokens=30, output_tokens=4)
SESSION_TOKEN = "agtap-test-aws-session-token-5c1e"     # sent as X-Amz-Security-Token
ACCESS_KEY_ID = "ASIAAGTAPTESTFAKE0001"                   # inside the SigV4 Authorization header
AZURE_KEY = "agtap-test-azure-key-3f9d"


@pytest.fixture(scope="module")
def tls_api(certs):
    from tests.support import FakeApi
    with FakeApi(certs) as api:
        yield api


def events_in_order(daemon, tls_api, pid: int, n: int) -> list[dict]:
    """pid's events once there are n and nothing more can come (a sentinel call's event came after)."""
    daemon.events(pid, n=n, timeout=30)
    sentinel = run_client("curl", tls_api, "anthropic").check()
    assert daemon.events(sentinel.pid, n=1, timeout=30), "the sentinel call has no event"
    evs = daemon.events(pid)
    assert len(evs) == n, [(e["operation"], e["model"], e["http_status"]) for e in evs]
    return sorted(evs, key=lambda e: e["ts"])


def check(evs: list[dict], want: list[dict]) -> None:
    for i, (ev, w) in enumerate(zip(evs, want)):
        for k, v in w.items():
            assert ev[k] == v, (i, k, v, ev)
        assert ev["kind"] == "llm_call" and ev["latency_ms"] > 0, ev
        failed = (ev["stop_reason"] or "").startswith("error:")
        if ev["streaming"] and not failed:
            assert 0 < ev["ttft_ms"] <= ev["latency_ms"], ev
        if not failed:
            assert ev["http_status"] == 200 and not ev["incomplete"], ev


def test_bedrock_boto3_and_anthropic_bedrock(daemon, tls_api):
    api = tls_api
    api.reset()
    calls = ["converse", "converse-tools", "converse-stream", "converse-stream-tools", "converse-error",
             "converse-stream", "invoke-claude", "invoke-claude-stream", "invoke-titan-embed",
             "invoke-cohere-embed", "anthropic", "anthropic-stream", "anthropic-tools", "anthropic-error"]
    api.script(Reply(**TOKENS, cache_read_input_tokens=10), Reply(**TOKENS, tool_calls=WEATHER),
               Reply(**TOKENS, events=5), Reply(**TOKENS, tool_calls=WEATHER), Reply(status=429),
               Reply(**TOKENS, stream_error=True), Reply(**TOKENS), Reply(**TOKENS), Reply(input_tokens=9),
               Reply(input_tokens=11), Reply(**TOKENS), Reply(**TOKENS), Reply(**TOKENS, tool_calls=WEATHER),
               Reply(status=429, error_type="ThrottlingException"))
    run = run_calls("python-bedrock", api, calls, api_key=SESSION_TOKEN).check()
    assert [r["call"] for r in run.results] == calls and "error" in run.results[4] and "error" in run.results[5]
    exchanges = api.wait_for(len(calls))
    assert all(ex.header("x-amz-security-token") == SESSION_TOKEN for ex in exchanges)
    msg_id = [f"msg_bdrk_fake{ex.seq:06d}" for ex in exchanges]   # the fake's ids follow its exchange count
    evs = events_in_order(daemon, tls_api, run.pid, len(calls))
    # Bedrock's path names the platform whatever the host (here the fake on 127.0.0.1)
    bedrock = dict(provider="aws_bedrock", platform="aws_bedrock", model=CLAUDE, operation="chat", **TOKENS)
    claude = dict(provider="anthropic", platform="aws_bedrock", model=CLAUDE, operation="chat", **TOKENS)
    check(evs, [
        dict(bedrock, streaming=False, stop_reason="end_turn", tools=[], cache_read_input_tokens=10, http_status=200,
             cost_usd=round((30 * 0.8 + 4 * 4.0 + 10 * 0.08) / 1e6, 8)),     # claude-3-5-haiku's prices
        dict(bedrock, streaming=False, stop_reason="tool_use", tools=["get_weather"]),
        dict(bedrock, streaming=True, stop_reason="end_turn", tools=[]),
        dict(bedrock, streaming=True, stop_reason="tool_use", tools=["get_weather"]),
        dict(provider="aws_bedrock", http_status=429, stop_reason="error:ThrottlingException"),
        dict(provider="aws_bedrock", streaming=True, http_status=200, stop_reason="error:modelStreamErrorException"),
        dict(claude, streaming=False, stop_reason="end_turn", id=msg_id[6]),
        dict(claude, streaming=True, stop_reason="end_turn", id=msg_id[7]),
        dict(provider="aws_bedrock", model="amazon.titan-embed-text-v2:0", operation="embeddings", input_tokens=9,
             output_tokens=0, streaming=False, cost_usd=round(9 * 0.02 / 1e6, 8)),   # its headers count 0 out
        dict(provider="aws_bedrock", model="cohere.embed-english-v3", operation="embeddings", input_tokens=11,
             output_tokens=0),
        dict(claude, streaming=False, stop_reason="end_turn", id=msg_id[10]),
        dict(claude, streaming=True, stop_reason="end_turn"),
        dict(claude, streaming=False, stop_reason="tool_use", tools=["get_weather"]),
        dict(provider="anthropic", http_status=429, stop_reason="error:ThrottlingException"),
    ])
    assert evs[2]["transport"] == "tls" and evs[2]["server_port"] == api.port


def test_azure_openai_and_openai_embeddings(daemon, tls_api):
    api = tls_api
    api.reset()
    served = "gpt-4o-2024-11-20"
    calls = ["chat", "chat-stream", "chat-tools", "responses", "responses-stream", "embeddings", "chat-error",
             "v1-chat", "openai-embeddings"]
    api.script(Reply(**TOKENS, model=served), Reply(**TOKENS, model=served), Reply(**TOKENS, model=served,
               tool_calls=WEATHER), Reply(**TOKENS, model=served), Reply(**TOKENS, model=served),
               Reply(input_tokens=5, model="text-embedding-3-small"), Reply(status=429), Reply(**TOKENS),
               Reply(input_tokens=8))
    run = run_calls("python-azure", api, calls, api_key=AZURE_KEY).check()
    assert [r["call"] for r in run.results] == calls and "error" in run.results[6]
    evs = events_in_order(daemon, tls_api, run.pid, len(calls))
    # the model that answered, not the deployment; /openai/deployments/ and /openai/responses name the platform
    azure = dict(provider="openai", platform="azure_openai", model=served, **TOKENS)
    check(evs, [
        dict(azure, operation="chat", streaming=False, stop_reason="stop", response_model=served),
        dict(azure, operation="chat", streaming=True, stop_reason="stop"),
        dict(azure, operation="chat", streaming=False, stop_reason="tool_calls", tools=["get_weather"]),
        dict(azure, operation="responses", streaming=False, stop_reason="completed"),
        dict(azure, operation="responses", streaming=True, stop_reason="completed"),
        dict(provider="openai", platform="azure_openai", operation="embeddings", model="text-embedding-3-small",
             input_tokens=5,
             cost_usd=round(5 * 0.02 / 1e6, 8)),
        # no answering model: the deployment
        dict(provider="openai", model="my-gpt-deployment", http_status=429, stop_reason="error:rate_limit_exceeded"),
        # /openai/v1/ is Groq's path too: only an Azure host would say Azure, and this one is 127.0.0.1
        dict(provider="openai", platform="local", operation="chat", model="my-gpt-deployment", stop_reason="stop"),
        dict(provider="openai", platform="local", operation="embeddings", model="text-embedding-3-small",
             input_tokens=8),
    ])


def test_gemini_and_vertex_embeddings(daemon, tls_api):
    api = tls_api
    api.reset()
    calls = ["gemini-embed", "vertex-embed", "gemini-embed-error"]
    api.script(Reply(input_tokens=9), Reply(input_tokens=4), Reply(status=429))
    run = run_calls("python-genai-embed", api, calls).check()
    assert "error" in run.results[2]
    evs = events_in_order(daemon, tls_api, run.pid, len(calls))
    check(evs, [
        dict(provider="google", platform="local", operation="embeddings", model="gemini-embedding-001",
             input_tokens=9, streaming=False, cost_usd=round(9 * 0.15 / 1e6, 8)),
        dict(provider="google", platform="vertex_ai", operation="embeddings", model="gemini-embedding-001",
             input_tokens=4),
        dict(operation="embeddings", http_status=429, stop_reason="error:RESOURCE_EXHAUSTED"),
    ])


def test_ollama_native_api_over_plain_http(daemon, tls_api, fake_api_plain):
    api = fake_api_plain
    calls = ["chat", "chat-stream", "chat-tools", "generate", "generate-stream", "embed", "chat-error"]
    api.script(Reply(**TOKENS), Reply(**TOKENS, events=6), Reply(**TOKENS, tool_calls=WEATHER), Reply(**TOKENS),
               Reply(**TOKENS, stop_reason="length"), Reply(input_tokens=7), Reply(status=404))
    run = run_calls("python-ollama", api, calls).check()
    assert run.results[6]["error"]["status"] == 404
    evs = events_in_order(daemon, tls_api, run.pid, len(calls))
    ollama = dict(provider="ollama", platform="ollama", model="llama3.2", transport="socket", server_port=api.port,
                  **TOKENS)
    check(evs, [
        dict(ollama, operation="chat", streaming=False, stop_reason="stop", tools=[], response_model="llama3.2"),
        dict(ollama, operation="chat", streaming=True, stop_reason="stop"),
        dict(ollama, operation="chat", streaming=False, stop_reason="stop", tools=["get_weather"]),
        dict(ollama, operation="text_completion", streaming=False, stop_reason="stop"),
        dict(ollama, operation="text_completion", streaming=True, stop_reason="length"),
        dict(provider="ollama", platform="ollama", operation="embeddings", model="all-minilm", input_tokens=7,
             output_tokens=None),
        dict(provider="ollama", http_status=404, stop_reason="error:http_404"),
    ])
    assert all("cost_usd" not in e for e in evs)       # local models have no price


def test_no_aws_or_azure_secret_reaches_the_log_or_the_bodies(daemon):
    """Runs last in this module: the clients above sent SigV4 credentials and an Azure api-key."""
    files = [p for p in (daemon.dir / "log").rglob("*") if p.is_file()]
    files += [p for p in (daemon.dir / "bodies").rglob("*") if p.is_file()]
    blob = b"".join(p.read_bytes() for p in files)
    assert b"msg_bdrk_fake" in blob            # the Bedrock calls were written
    for secret in (SESSION_TOKEN, ACCESS_KEY_ID, AZURE_KEY):
        assert secret.encode() not in blob, secret
    assert b"AWS4-HMAC-SHA256" not in blob      # the whole Authorization value goes, not just the key id
