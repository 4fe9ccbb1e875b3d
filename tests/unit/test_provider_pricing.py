"""Price lookup and cost arithmetic (prices: agtap/data/prices.json, per million tokens)."""

from __future__ import annotations

import json

import pytest

from agtap.call import Call
from agtap.providers.pricing import PriceTable, load_prices


def call(provider, model, **tok):
    c = Call(ts="", id="", pid=1, proc="p", provider=provider, server_address="", kind="llm_call", model=model)
    for k, v in tok.items():
        setattr(c, k, v)
    return c


def test_prefix_matching_of_dated_and_versioned_ids():
    t = PriceTable(override=None)
    assert t.lookup("claude-sonnet-4-5-20250929") == t.models["claude-sonnet-4-5"]
    assert t.lookup("claude-sonnet-4-5@20250929") == t.models["claude-sonnet-4-5"]   # Vertex spelling
    assert t.lookup("claude-sonnet-4-20250514") == t.models["claude-sonnet-4"]
    assert t.lookup("gpt-4o-mini-2024-07-18") == t.models["gpt-4o-mini"]
    assert t.lookup("gpt-5.1-2025-11-13") == t.models["gpt-5.1"]
    assert t.lookup("gpt-5.2") is None          # not gpt-5: a newer version, price unknown
    assert t.lookup("models/gemini-2.5-flash-001") == t.models["gemini-2.5-flash"]
    assert t.lookup("gemini-2.5-flash-lite") == t.models["gemini-2.5-flash-lite"]
    assert t.lookup("llama-3.1-8b") is None and t.lookup(None) is None
    assert t.lookup("gpt-4ox") is None          # a prefix must end at a word boundary


def test_costs_by_provider_rules():
    t = PriceTable(override=None)
    # anthropic: cache reads/writes are separate from input
    assert t.cost(call("anthropic", "claude-haiku-4-5", input_tokens=1000, output_tokens=100,
                       cache_read_input_tokens=10_000, cache_creation_input_tokens=2000)) == pytest.approx(
        (1000 * 1.0 + 100 * 5.0 + 10_000 * 0.10 + 2000 * 1.25) / 1e6)
    # openai: cached tokens are part of the prompt count
    assert t.cost(call("openai", "o3", input_tokens=1000, output_tokens=100, cache_read_input_tokens=600,
                       thoughts_tokens=50)) == pytest.approx((400 * 2.0 + 600 * 0.5 + 100 * 8.0) / 1e6)
    # gemini: thinking billed as output; long prompts use the higher tier
    assert t.cost(call("google", "gemini-2.5-pro", input_tokens=300_000, output_tokens=10, thoughts_tokens=90)) \
        == pytest.approx((300_000 * 2.50 + 100 * 15.0) / 1e6)
    assert t.cost(call("openai", "unknown-model", input_tokens=5)) is None
    assert t.cost(call("openai", "gpt-4o")) is None   # no tokens, no cost


def test_override_file(tmp_path):
    f = tmp_path / "prices.json"
    f.write_text(json.dumps({"models": {"my-local-model": {"input": 1.0, "output": 2.0},
                                        "gpt-4o": {"input": 0.0, "output": 0.0}}}))
    models = load_prices(str(f))
    assert models["my-local-model"]["output"] == 2.0 and models["gpt-4o"]["input"] == 0.0
    assert "claude-opus-4-5" in models
    t = PriceTable(override=str(f))
    assert t.cost(call("openai", "my-local-model-q4", input_tokens=1_000_000, output_tokens=0)) == 1.0


def test_packaged_table_is_dated_and_sourced():
    from importlib import resources
    meta = json.loads(resources.files("agtap").joinpath("data", "prices.json").read_bytes())
    assert meta["as_of"] >= "2025-01-01" and "anthropic.com" in meta["_about"]
    for name, p in meta["models"].items():
        assert p["input"] >= 0 and p["output"] >= 0, name


def test_broken_override_falls_back_to_packaged_prices(tmp_path):
    f = tmp_path / "prices.json"
    f.write_text("{not json")
    t = PriceTable(override=str(f))
    assert t.error and t.lookup("gpt-4o") is not None
    f.write_text(json.dumps({"models": {"x": 3}}))
    assert PriceTable(override=str(f)).error.startswith(str(f))
    with pytest.raises(ValueError):
        load_prices(str(f))


def test_bedrock_ids_find_the_claude_prices():
    t = PriceTable(override=None)
    sonnet = t.lookup("claude-sonnet-4-5")
    for model in ("anthropic.claude-sonnet-4-5-20250929-v1:0", "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
                  "arn:aws:bedrock:us-east-1:123456789012:inference-profile/global.anthropic.claude-sonnet-4-5-20250929-v1:0"):
        assert t.lookup(model) is sonnet, model
    assert t.lookup("x.y.anthropic.claude-sonnet-4-5") is None      # not a Bedrock id: no guess
    assert t.lookup("amazon.titan-embed-text-v2:0") == {"input": 0.02, "output": 0.0}
    # an embeddings call: input tokens only
    assert t.cost(call("aws_bedrock", "cohere.embed-english-v3", input_tokens=2_000_000)) == 0.2
