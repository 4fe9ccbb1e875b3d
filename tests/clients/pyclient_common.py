"""Shared command line and output for the Python client scripts in tests/clients.

Every script: `python tests/clients/py_<sdk>.py --base-url URL --mode MODE [--repeat N]
[--model M] [--wait-go]`, API key from $AGTAP_TEST_API_KEY. It prints ONE JSON line on
stdout: {"client", "mode", "pid", "results": [one dict per call]} and exits 0, also when
the API answered with an error (that is recorded in the result): exit != 0 means the SDK
or the script itself failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from typing import Any, Callable


def parse_args(modes: list[str], default_model: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--mode", choices=modes, default=modes[0])
    parser.add_argument("--model", default=default_model)
    parser.add_argument("--prompt", default="Say hello.")
    parser.add_argument("--prompt-size", type=int, default=0,
                        help="send a prompt of this many bytes instead (large request bodies)")
    parser.add_argument("--repeat", type=int, default=1, help="calls made on one client (keep-alive)")
    parser.add_argument("--parallel", type=int, default=1,
                        help="run the calls from this many threads at once (several connections)")
    parser.add_argument("--exit-after", type=int, default=0,
                        help="streams: exit the process abruptly after this many text deltas")
    parser.add_argument("--wait-go", action="store_true",
                        help="after set-up, wait for a line on stdin before the first call")
    parser.add_argument("--http2", action="store_true",
                        help="pass the SDK an HTTP/2 client: http_client=httpx2.Client(http2=True)")
    args = parser.parse_args()
    if args.prompt_size:
        args.prompt = big_prompt(args.prompt_size)
    return args


def big_prompt(size: int) -> str:
    """`size` bytes of ASCII words: a large request body that still looks like a prompt."""
    return ("Summarize this log line please. " * (size // 32 + 1))[:size]


def exit_now(client_name: str, args: argparse.Namespace, partial: dict[str, Any]) -> None:
    """Die mid-stream like a killed agent: no socket shutdown, no TLS close_notify."""
    line = json.dumps({"client": client_name, "mode": args.mode, "pid": os.getpid(),
                       "results": [{"aborted": True, **partial}]})
    os.write(1, (line + "\n").encode())
    os._exit(0)


def http_client(args: argparse.Namespace):
    """The SDK's http_client: None (its own, HTTP/1.1) or, with --http2, httpx2 speaking HTTP/2
    (ALPN h2; the h2 package does the framing). Trusts $SSL_CERT_FILE like the SDK's own."""
    if not args.http2:
        return None
    import ssl

    import httpx2
    return httpx2.Client(http2=True, verify=ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE")))


def api_key() -> str:
    return os.environ.get("AGTAP_TEST_API_KEY", "sk-agtap-test-key")


def wait_go(args: argparse.Namespace) -> None:
    if args.wait_go:
        print(json.dumps({"ready": os.getpid()}), flush=True)
        sys.stdin.readline()


def run(client_name: str, args: argparse.Namespace, call: Callable[[], dict[str, Any]]) -> None:
    results: list[dict[str, Any]] = []
    try:
        if args.parallel > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(args.parallel) as pool:
                results = list(pool.map(lambda _: call(), range(args.repeat * args.parallel)))
        else:
            for _ in range(args.repeat):
                results.append(call())
    except Exception:
        traceback.print_exc()
        print(json.dumps({"client": client_name, "mode": args.mode, "pid": os.getpid(),
                          "results": results, "failed": True}), flush=True)
        sys.exit(1)
    print(json.dumps({"client": client_name, "mode": args.mode, "pid": os.getpid(),
                      "results": results}), flush=True)


def tool_schema() -> dict[str, Any]:
    """JSON schema of the `get_weather` tool every tools-mode client offers."""
    return {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


# --- the scripts that make a list of calls (py_bedrock, py_azure, py_genai_embed, py_ollama) ---

def parse_calls_args() -> argparse.Namespace:
    """--base-url URL --calls a,b,c [--wait-go]: tests.support.clients.run_calls's command line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--calls", required=True, help="comma-separated call names (see the script's docstring)")
    parser.add_argument("--wait-go", action="store_true")
    return parser.parse_args()


def run_calls(client_name: str, args: argparse.Namespace, one: Callable[[str], dict[str, Any]]) -> None:
    """one(name) for each call named, in order; one JSON line with every result."""
    wait_go(args)
    results = [one(name) for name in args.calls.split(",")]
    print(json.dumps({"client": client_name, "mode": "calls", "pid": os.getpid(), "results": results}), flush=True)
