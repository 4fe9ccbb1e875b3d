"""OpenAI-compatible clouds: recognised by path (provider "openai"), named by host (platform),
priced from their platform's table; the usage shapes they send.

Bodies are written for these tests after each cloud's documented Chat Completions shape:
Groq (https://console.groq.com/docs/api-reference#chat-create: usage in the finish chunk
and under x_groq.usage; a mid-stream `event: error`), DeepSeek
(https://api-docs.deepseek.com/api/create-chat-completion: usage.prompt_cache_hit_tokens),
xAI (https://docs.x.ai/docs/api-reference: prompt_tokens_details.cached_tokens).
"""

from __future__ import annotations

import json

import pytest

from agtap.providers.pricing import PriceTable
from tests.support.harness import Run, chunk_frame, end_chunked, request, response, response_head


def chat(model, content="ok", finish="stop", usage=None, rid="chatcmpl-7", **extra) -> dict:
    out = {"id": rid, "object": "chat.completion", "created": 1764000000, "model": model,
           "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
           **extra}
    if usage is not None:
        out["usage"] = usage
    return out


@pytest.mark.parametrize("host,path,model,usage,platform,usd", [
    # Groq: $0.59 in, $0.79 out
    ("api.groq.com", "/openai/v1/chat/completions", "llama-3.3-70b-versatile",
     {"prompt_tokens": 1000, "completion_tokens": 100}, "groq", (1000 * 0.59 + 100 * 0.79) / 1e6),
    # Groq's id for gpt-oss keeps the vendor prefix: priced from Groq's table ($0.15 / $0.75)
    ("api.groq.com", "/openai/v1/chat/completions", "openai/gpt-oss-120b",
     {"prompt_tokens": 2000, "completion_tokens": 300}, "groq", (2000 * 0.15 + 300 * 0.75) / 1e6),
    # DeepSeek: 600 of the 1000 prompt tokens hit the cache ($0.028), 400 miss ($0.28), $0.42 out
    ("api.deepseek.com", "/chat/completions", "deepseek-chat",
     {"prompt_tokens": 1000, "completion_tokens": 50, "prompt_cache_hit_tokens": 600, "prompt_cache_miss_tokens": 400},
     "deepseek", (400 * 0.28 + 600 * 0.028 + 50 * 0.42) / 1e6),
    # xAI: grok-4 $3 in, $0.75 cached, $15 out
    ("api.x.ai", "/v1/chat/completions", "grok-4-0709",
     {"prompt_tokens": 1000, "completion_tokens": 10, "prompt_tokens_details": {"cached_tokens": 800}},
     "xai", (200 * 3.0 + 800 * 0.75 + 10 * 15.0) / 1e6),
    # Mistral: mistral-large $2 in, $6 out
    ("api.mistral.ai", "/v1/chat/completions", "mistral-large-latest",
     {"prompt_tokens": 500, "completion_tokens": 20}, "mistral", (500 * 2.0 + 20 * 6.0) / 1e6),
    # OpenRouter passes a first party's model through at its price (vendor prefix stripped)
    ("openrouter.ai", "/api/v1/chat/completions", "openai/gpt-4o-mini",
     {"prompt_tokens": 1000, "completion_tokens": 100}, "openrouter", (1000 * 0.15 + 100 * 0.60) / 1e6),
    # OpenRouter's Claude in OpenAI's shape: prompt_tokens include the 600 cached (sonnet-4-5: $3, $0.30 cached, $15)
    ("openrouter.ai", "/api/v1/chat/completions", "anthropic/claude-sonnet-4.5",
     {"prompt_tokens": 1000, "completion_tokens": 100, "prompt_tokens_details": {"cached_tokens": 600}}, "openrouter",
     (400 * 3.0 + 600 * 0.30 + 100 * 15.0) / 1e6),
    # Together: no prices in the table: no cost_usd rather than a guess
    ("api.together.xyz", "/v1/chat/completions", "meta-llama/Llama-3.3-70B-Instruct-Turbo",
     {"prompt_tokens": 10, "completion_tokens": 1}, "together", None),
])
def test_cloud_named_by_host_and_priced_by_platform(host, path, model, usage, platform, usd):
    r = Run()
    r.out(request(path, {"model": model, "messages": [{"role": "user", "content": "hi"}]}, host=host), 0)
    r.inn(response(chat(model, usage=usage)), 30)
    c = r.one()
    assert (c.provider, c.platform, c.operation, c.model, c.id) == ("openai", platform, "chat", model, "chatcmpl-7")
    assert (c.input_tokens, c.output_tokens) == (usage["prompt_tokens"], usage["completion_tokens"])
    if usd is None:
        assert c.cost_usd is None
    else:
        assert c.cost_usd == pytest.approx(usd)


def test_same_model_id_costs_what_its_platform_charges():
    t = PriceTable(override=None)
    assert t.lookup("openai/gpt-oss-120b", "groq") == {"input": 0.15, "output": 0.75}
    assert t.lookup("openai/gpt-oss-120b", "other") is None       # not priced where the table has no price
    assert t.lookup("deepseek-chat", "deepseek")["cache_read"] == 0.028
    assert t.lookup("deepseek-chat", "openrouter") is None
    assert t.lookup("gpt-4o", "groq") == t.models["gpt-4o"]        # the first parties' table still applies
    # OpenRouter's ids: vendor prefix, and dots in Claude's versions
    assert t.lookup("anthropic/claude-sonnet-4.5", "openrouter") == t.models["claude-sonnet-4-5"]
    assert t.lookup("anthropic/claude-3.5-haiku", "openrouter") == t.models["claude-3-5-haiku"]
    assert t.lookup("google/gemini-2.5-flash", "openrouter") == t.models["gemini-2.5-flash"]


def test_override_file_adds_a_platform(tmp_path):
    f = tmp_path / "prices.json"
    f.write_text(json.dumps({"platforms": {"together": {"models": {"meta-llama/llama-3.3-70b-instruct-turbo":
                                                                    {"input": 0.88, "output": 0.88}}},
                                           "groq": {"models": {"llama-3.3-70b-versatile": {"input": 1, "output": 1}}}}}))
    t = PriceTable(override=str(f))
    assert t.error is None
    assert t.lookup("meta-llama/Llama-3.3-70B-Instruct-Turbo", "together") == {"input": 0.88, "output": 0.88}
    assert t.lookup("llama-3.3-70b-versatile", "groq") == {"input": 1, "output": 1}   # replaced
    assert t.lookup("llama-3.1-8b-instant", "groq") == {"input": 0.05, "output": 0.08}  # kept
    assert t.models["gpt-4o"]["input"] == 2.5
    f.write_text(json.dumps({"platforms": {"groq": {"models": ["not", "a", "table"]}}}))
    bad = PriceTable(override=str(f))
    assert "platforms.groq" in bad.error and bad.lookup("llama-3.3-70b-versatile", "groq")["input"] == 0.59


def sse(*events) -> bytes:
    return b"".join(b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\r\n\r\n" for e in events)


def chunk(delta, finish=None, **extra) -> dict:
    return {"id": "chatcmpl-g1", "object": "chat.completion.chunk", "model": "openai/gpt-oss-120b",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


def test_groq_usage_only_under_x_groq_in_the_finish_chunk():
    r = Run()
    r.out(request("/openai/v1/chat/completions", {"model": "openai/gpt-oss-120b", "stream": True, "messages": []},
                  host="api.groq.com"), 0)
    r.inn(response_head(200, {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"}), 10)
    u = {"prompt_tokens": 304, "completion_tokens": 49, "total_tokens": 353,
         "completion_tokens_details": {"reasoning_tokens": 23}}
    r.inn(chunk_frame(sse(chunk({"role": "assistant", "content": "Hi"}))), 20)
    r.inn(chunk_frame(sse(chunk({}, "stop", x_groq={"id": "req_1", "usage": u}), b"[DONE]")), 30)
    end_chunked(r, 31)
    c = r.one()
    assert (c.platform, c.stop_reason, c.input_tokens, c.output_tokens, c.thoughts_tokens) == \
        ("groq", "stop", 304, 49, 23)
    assert c.ttft_ms == 20.0 and not c.incomplete and c.cost_usd == pytest.approx((304 * 0.15 + 49 * 0.75) / 1e6)


def test_mid_stream_error_event_without_done_is_one_error_call():
    """Groq ends a stream that failed half-way with `event: error` and no finish_reason, usage or [DONE]."""
    r = Run()
    r.out(request("/openai/v1/chat/completions", {"model": "openai/gpt-oss-120b", "stream": True, "messages": []},
                  host="api.groq.com"), 0)
    r.inn(response_head(200, {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"}), 10)
    r.inn(chunk_frame(sse(chunk({"role": "assistant", "content": ""}))), 20)
    err = {"error": {"message": "Tool call validation failed", "type": "invalid_request_error",
                     "code": "tool_use_failed", "status_code": 400}}
    r.inn(chunk_frame(b"event: error\r\ndata: " + json.dumps(err).encode() + b"\r\n\r\n"), 30)
    end_chunked(r, 31)
    (c,) = r.calls
    assert (c.http_status, c.error_type, c.stop_reason) == (200, "tool_use_failed", "error:tool_use_failed")
    assert c.outcome() == "error" and c.id == "chatcmpl-g1" and c.streaming


def test_packaged_platform_tables_are_sourced_and_name_known_platforms():
    from importlib import resources

    from agtap.providers import platforms
    meta = json.loads(resources.files("agtap").joinpath("data", "prices.json").read_bytes())
    assert set(meta["platforms"]) <= set(platforms.NAMES)
    for name, table in meta["platforms"].items():
        assert table["_source"].startswith("https://"), name
        assert table["models"] and all(p["input"] >= 0 and p["output"] >= 0 for p in table["models"].values())
