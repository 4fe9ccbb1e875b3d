"""The `openai` SDK's AzureOpenAI client (and its OpenAI client for embeddings) against the fake API.

One call per name in --calls, in order: chat, chat-stream, chat-tools, responses,
responses-stream, embeddings, chat-error (AzureOpenAI: /openai/deployments/{deployment}/...,
?api-version=, the key in `api-key`); v1-chat (the deployment-less /openai/v1/ form, through
openai.OpenAI with base_url .../openai/v1/ as Azure documents it); openai-embeddings
(api.openai.com's /v1/embeddings). Prints {"client": "python-azure", "pid", "results": [...]}.
"""

from __future__ import annotations

import os

from pyclient_common import parse_calls_args, run_calls

args = parse_calls_args()

import openai  # noqa: E402

key = os.environ.get("AGTAP_TEST_API_KEY", "agtap-azure-test-key")
azure = openai.AzureOpenAI(api_key=key, azure_endpoint=args.base_url, api_version="2024-10-21", max_retries=0)
v1 = openai.OpenAI(api_key=key, base_url=args.base_url.rstrip("/") + "/openai/v1/", max_retries=0)
plain = openai.OpenAI(api_key=key, base_url=args.base_url.rstrip("/") + "/v1", max_retries=0)
DEPLOYMENT = "my-gpt-deployment"
MESSAGES = [{"role": "user", "content": "Weather in Paris?"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


def one(name: str) -> dict:
    try:
        if name in ("chat", "chat-tools", "chat-error"):
            r = azure.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES,
                                              tools=TOOLS if name == "chat-tools" else openai.omit)
            m = r.choices[0].message
            return {"call": name, "model": r.model, "stop_reason": r.choices[0].finish_reason,
                    "tools": [t.function.name for t in m.tool_calls or []], "usage": r.usage.prompt_tokens}
        if name == "chat-stream":
            text, model = [], None
            for c in azure.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES, stream=True,
                                                   stream_options={"include_usage": True}):
                model = c.model
                text += [ch.delta.content or "" for ch in c.choices]
            return {"call": name, "model": model, "text": "".join(text)}
        if name == "responses":
            r = azure.responses.create(model=DEPLOYMENT, input="Weather in Paris?")
            return {"call": name, "model": r.model, "status": r.status, "text": r.output_text}
        if name == "responses-stream":
            kinds = [e.type for e in azure.responses.create(model=DEPLOYMENT, input="hi", stream=True)]
            return {"call": name, "last": kinds[-1]}
        if name == "embeddings":
            r = azure.embeddings.create(model="my-embedding-deployment", input=["hello", "world"])
            return {"call": name, "model": r.model, "n": len(r.data), "tokens": r.usage.prompt_tokens}
        if name == "v1-chat":
            r = v1.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES)
            return {"call": name, "model": r.model, "stop_reason": r.choices[0].finish_reason}
        if name == "openai-embeddings":
            r = plain.embeddings.create(model="text-embedding-3-small", input="The food was delicious")
            return {"call": name, "model": r.model, "n": len(r.data[0].embedding), "tokens": r.usage.prompt_tokens}
        raise ValueError(f"unknown call {name!r}")
    except openai.APIConnectionError:
        raise   # the harness is broken (CA, port): fail the script
    except openai.APIError as e:
        return {"call": name, "error": {"status": getattr(e, "status_code", None), "body": e.body}}


run_calls("python-azure", args, one)
