"""OpenAI-compatible clouds on the real kernel: the official `openai` SDK pointed at a cloud's
documented base URL (https://api.deepseek.com/v1, https://api.x.ai/v1, https://api.mistral.ai/v1),
served by the local fake API.

The SDK connects to 127.0.0.1 but sends the cloud's name in its Host header (httpx keeps a Host
the caller sets), which is all agtap reads to name the platform: so each call must come out as
provider "openai", platform by host, its response id, and cost_usd from that platform's price
(agtap/data/prices.json, worked out here by hand from the scripted tokens).
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.support import Reply, run_client
from tests.support.clients import PYTHON, client_env

CLIENT = r'''
import json, sys, openai
base, host, model, stream = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "stream"
client = openai.OpenAI(api_key="sk-fake-compat-cloud-0123456789", base_url=base, max_retries=0,
                       default_headers={"Host": host})
msgs = [{"role": "user", "content": "Say hello."}]
if stream:
    out = {}
    for chunk in client.chat.completions.create(model=model, messages=msgs, stream=True,
                                                stream_options={"include_usage": True}):
        out["id"] = chunk.id
        if chunk.usage:
            out["usage"] = chunk.usage.prompt_tokens
else:
    r = client.chat.completions.create(model=model, messages=msgs)
    out = {"id": r.id, "usage": r.usage.prompt_tokens}
print(json.dumps(out))
'''

# (host, model, platform, price per MTok: input, cached input, output) from agtap/data/prices.json
CLOUDS = [
    ("api.deepseek.com", "deepseek-chat", "deepseek", (0.28, 0.028, 0.42)),
    ("api.x.ai", "grok-4-0709", "xai", (3.0, 0.75, 15.0)),
    ("api.mistral.ai", "mistral-small-latest", "mistral", (0.10, 0.10, 0.30)),   # no cached price: input's
]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("host,model,platform,price", CLOUDS, ids=[c[2] for c in CLOUDS])
def test_cloud_call_is_one_event_named_and_priced(daemon, fake_api, host, model, platform, price, stream):
    fake_api.script(Reply(text="Hello from the cloud.", model=model, input_tokens=1000, output_tokens=40,
                          cache_read_input_tokens=600))
    p = subprocess.Popen([PYTHON, "-c", CLIENT, f"{fake_api.base_url}/v1", host, model, "stream" if stream else "json"],
                         env=client_env(fake_api), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    got = json.loads(out)
    (ex,) = fake_api.wait_for(1)
    assert ex.header("host") == host and ex.path == "/v1/chat/completions"   # what the wire carried
    daemon.events(p.pid, n=1, timeout=30)
    # a later call's event (another process) is handled after everything of this client's: then
    # any second event for its call would be in the log already
    sentinel = run_client("curl", fake_api, "anthropic").check()
    assert daemon.events(sentinel.pid, n=1, timeout=30)
    evs = daemon.events(p.pid)
    assert len(evs) == 1, evs
    ev = evs[0]
    assert (ev["provider"], ev["platform"], ev["server_address"]) == ("openai", platform, host)
    assert (ev["model"], ev["streaming"], ev["incomplete"]) == (model, stream, False)
    assert (ev["input_tokens"], ev["output_tokens"], ev["cache_read_input_tokens"]) == (1000, 40, 600)
    p_in, p_cached, p_out = price
    assert ev["cost_usd"] == pytest.approx((400 * p_in + 600 * p_cached + 40 * p_out) / 1e6)
    assert ev["id"] == ev["response_id"] == got["id"] and len(ev["event_id"]) == 32
