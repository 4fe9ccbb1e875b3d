"""The official `ollama` Python client against the plain-HTTP fake API, one call per name in --calls.

Calls: chat, chat-stream, chat-tools, generate, generate-stream, embed, chat-error. The client
speaks plain HTTP to 127.0.0.1 (as to a local Ollama), so the tracer sees it through the socket
syscalls, not TLS. Prints {"client": "python-ollama", "pid", "results": [{"call", ...}]}.
"""

from __future__ import annotations

from pyclient_common import parse_calls_args, run_calls

args = parse_calls_args()

import ollama  # noqa: E402

client = ollama.Client(host=args.base_url)
MESSAGES = [{"role": "user", "content": "Weather in Paris?"}]
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def one(name: str) -> dict:
    try:
        if name.startswith("chat"):
            tools = TOOLS if name == "chat-tools" else None
            if name == "chat-stream":
                parts = list(client.chat(model="llama3.2", messages=MESSAGES, stream=True))
                last = parts[-1]
                return {"call": name, "text": "".join(p.message.content or "" for p in parts),
                        "done_reason": last.done_reason, "eval_count": last.eval_count}
            r = client.chat(model="llama3.2", messages=MESSAGES, tools=tools)
            return {"call": name, "text": r.message.content, "done_reason": r.done_reason,
                    "tools": [t.function.name for t in r.message.tool_calls or []],
                    "prompt_eval_count": r.prompt_eval_count, "eval_count": r.eval_count}
        if name.startswith("generate"):
            if name == "generate-stream":
                parts = list(client.generate(model="llama3.2", prompt="Why is the sky blue?", stream=True))
                return {"call": name, "text": "".join(p.response for p in parts), "done_reason": parts[-1].done_reason}
            r = client.generate(model="llama3.2", prompt="Why is the sky blue?")
            return {"call": name, "text": r.response, "done_reason": r.done_reason}
        r = client.embed(model="all-minilm", input=["hello", "world"])
        return {"call": name, "n": len(r.embeddings), "prompt_eval_count": r.prompt_eval_count}
    except ollama.ResponseError as e:
        return {"call": name, "error": {"status": e.status_code, "message": e.error}}


run_calls("python-ollama", args, one)
