"""Official `openai` Python SDK against the fake API.

Modes: chat-stream (stream_options.include_usage), chat, chat-tools, chat-tools-stream,
responses-stream, responses, responses-tools; azure-chat-stream and azure-chat use the
SDK's AzureOpenAI client (/openai/deployments/{model}/chat/completions, `api-key` header).
"""

from __future__ import annotations

import json

import openai

from pyclient_common import api_key, exit_now, http_client, parse_args, run, tool_schema, wait_go

args = parse_args(["chat-stream", "chat", "chat-tools", "chat-tools-stream",
                   "responses-stream", "responses", "responses-tools", "azure-chat-stream", "azure-chat"],
                  "gpt-5.1")
if args.mode.startswith("azure"):
    client = openai.AzureOpenAI(api_key=api_key(), azure_endpoint=args.base_url, api_version="2024-10-21",
                                max_retries=0)
    args.mode = args.mode[len("azure-"):]  # the same chat calls from here on
else:
    # base_url ends in /v1 like the real default (https://api.openai.com/v1).
    client = openai.OpenAI(api_key=api_key(), base_url=args.base_url.rstrip("/") + "/v1", max_retries=0,
                           http_client=http_client(args))
messages = [{"role": "user", "content": args.prompt}]
chat_tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                                "parameters": tool_schema()}}]
resp_tools = [{"type": "function", "name": "get_weather", "description": "Weather for a city",
               "parameters": tool_schema()}]


def chat_usage(u) -> dict:
    details = u.prompt_tokens_details
    return {"input_tokens": u.prompt_tokens, "output_tokens": u.completion_tokens,
            "cache_read_input_tokens": details.cached_tokens if details else None}


def chat_call() -> dict:
    tools = chat_tools if "tools" in args.mode else openai.omit
    if not args.mode.endswith("stream"):
        r = client.chat.completions.create(model=args.model, messages=messages, tools=tools)
        m = r.choices[0].message
        return {"id": r.id, "model": r.model, "stop_reason": r.choices[0].finish_reason,
                "text": m.content or "", **chat_usage(r.usage),
                "tool_calls": [{"id": t.id, "name": t.function.name,
                                "arguments": json.loads(t.function.arguments)} for t in m.tool_calls or []]}
    stream = client.chat.completions.create(model=args.model, messages=messages, tools=tools, stream=True,
                                            stream_options={"include_usage": True})
    text, calls, out = [], {}, {"stop_reason": None}
    for chunk in stream:
        out["id"], out["model"] = chunk.id, chunk.model
        if chunk.usage:
            out.update(chat_usage(chunk.usage))
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            if choice.delta.content and sum(1 for t in text if t) == args.exit_after:
                exit_now("python-openai", args, {"text": "".join(text)})
            for tc in choice.delta.tool_calls or []:
                entry = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                entry["id"] = tc.id or entry["id"]
                entry["name"] += (tc.function.name or "") if tc.function else ""
                entry["arguments"] += (tc.function.arguments or "") if tc.function else ""
            out["stop_reason"] = choice.finish_reason or out["stop_reason"]
    out["text"] = "".join(text)
    out["tool_calls"] = [{**c, "arguments": json.loads(c["arguments"])} for _, c in sorted(calls.items())]
    return out


def summarize_response(r, streamed_text: str | None = None) -> dict:
    u = r.usage
    return {"id": r.id, "model": r.model, "stop_reason": r.status, "text": r.output_text,
            "streamed_text": streamed_text,
            "input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
            "cache_read_input_tokens": u.input_tokens_details.cached_tokens,
            "tool_calls": [{"id": o.call_id, "name": o.name, "arguments": json.loads(o.arguments)}
                           for o in r.output if o.type == "function_call"]}


def responses_call() -> dict:
    tools = resp_tools if "tools" in args.mode else openai.omit
    if args.mode == "responses-stream":
        text, final = [], None
        for event in client.responses.create(model=args.model, input=args.prompt, tools=tools, stream=True):
            if event.type == "response.output_text.delta":
                text.append(event.delta)
            elif event.type == "response.completed":
                final = event.response
        return summarize_response(final, "".join(text))
    return summarize_response(client.responses.create(model=args.model, input=args.prompt, tools=tools))


def call() -> dict:
    try:
        return chat_call() if args.mode.startswith("chat") else responses_call()
    except openai.APIConnectionError:
        raise  # the harness is broken (CA, port): fail the script
    except openai.APIError as e:  # HTTP error status, or an error event inside a stream (status None)
        err = (e.body or {}) if isinstance(e.body, dict) else {}
        err = err.get("error", err) if isinstance(err, dict) else {}
        return {"error": {"status": getattr(e, "status_code", None), "type": err.get("type"),
                          "message": err.get("message"), "code": err.get("code")}}


wait_go(args)
run("python-openai", args, call)
