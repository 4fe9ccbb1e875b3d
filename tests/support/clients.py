"""Run official clients against a FakeApi in their own process, as a traced program would.

The tracer under test must see a real, separate process (its own pid, its own libssl or
node binary), so every client runs as a subprocess: Python SDK scripts with this venv's
interpreter, Node scripts with /usr/bin/node, curl as itself. Each prints one JSON line
that says what the SDK parsed; `ClientRun.results` holds it.

    run = run_client("python-anthropic", api, "stream")     # blocks until it exits
    proc = start_client("node-openai", api, "chat-stream", wait_go=True)
    ... attach / check the tracer sees proc.pid ...
    run = proc.go().wait()
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any

from .fakeapi import FakeApi
from .paths import REPO

CLIENTS_DIR = REPO / "tests" / "clients"
PYTHON = sys.executable  # the venv's python: it has the SDKs
NODE = shutil.which("node") or "/usr/bin/node"
CURL = shutil.which("curl") or "/usr/bin/curl"

# One distinct fake key per client, so a secret-stripping test can grep stored bodies,
# logs and events for it. Each client sends it the way its SDK does (see KEY_HEADER).
API_KEYS = {
    "python-anthropic": "sk-ant-agtap-test-pyanthropic-7f3a",
    "python-openai": "sk-agtap-test-pyopenai-91c2",
    "python-gemini": "AIzaAgtapTestPyGemini5e1d",
    "node-anthropic": "sk-ant-agtap-test-nodeanthropic-2b8e",
    "node-openai": "sk-agtap-test-nodeopenai-c44f",
    "curl": "sk-agtap-test-curl-0d9b",
    "python-requests": "sk-agtap-test-requests-a1e7",
    "python-httpx": "sk-agtap-test-httpx-66b0",
}
# Header that carries the key on the wire, per client (what the SDK versions installed do;
# anthropic's SDKs send Authorization: Bearer for api_key since their 2.x/1.x releases).
# Mode exceptions: python-openai azure-* sends `api-key`; curl/requests/httpx send
# x-api-key (anthropic modes), Authorization: Bearer (openai, vertex-*), x-goog-api-key
# (gemini) or ?key= in the URL (curl gemini-query-key).
KEY_HEADER = {
    "python-anthropic": "authorization", "python-openai": "authorization",
    "python-gemini": "x-goog-api-key", "node-anthropic": "authorization", "node-openai": "authorization",
}

# kind -> modes it accepts (first one is the default).
MODES: dict[str, list[str]] = {
    "python-anthropic": ["stream", "nonstream", "tools", "tools-stream", "vertex-stream", "vertex"],
    "python-openai": ["chat-stream", "chat", "chat-tools", "chat-tools-stream",
                      "responses-stream", "responses", "responses-tools", "azure-chat-stream", "azure-chat"],
    "python-gemini": ["stream", "nonstream", "tools", "vertex-stream", "vertex"],
    "node-anthropic": ["stream", "nonstream", "tools", "tools-stream"],
    "node-openai": ["chat-stream", "chat", "chat-tools", "responses-stream", "responses"],
    # Raw HTTP clients: the mode names the request they send (see raw_request()).
    "curl": ["anthropic-stream", "anthropic", "openai-chat-stream", "openai-chat", "responses-stream",
             "gemini-stream", "gemini-stream-array", "gemini", "vertex-gemini-stream",
             "vertex-anthropic-stream", "gemini-query-key", "echo", "bulk"],
    "python-requests": ["anthropic", "anthropic-stream", "openai-chat-stream", "openai-chat",
                        "responses-stream", "gemini-stream", "gemini", "echo", "bulk"],
    "python-httpx": ["anthropic", "anthropic-stream", "openai-chat-stream", "openai-chat",
                     "responses-stream", "gemini-stream", "gemini", "echo", "bulk"],
    # MCP over stdio (no FakeApi needed; pass api=None).
    "python-mcp": ["session"],  # mcp SDK ClientSession <-> tests/support/mcp_server.py
    "node-mcp": ["session"],  # @modelcontextprotocol/sdk Client <-> the same server
    "node-jsonrpc": ["session"],  # hand-written newline JSON-RPC over child_process pipes
}


@dataclass
class ClientRun:
    kind: str
    mode: str
    argv: list[str]
    pid: int
    returncode: int
    stdout: str
    stderr: str
    output: dict[str, Any] | None = None  # the client's JSON line
    api_key: str | None = None

    @property
    def results(self) -> list[dict[str, Any]]:
        return (self.output or {}).get("results", [])

    @property
    def result(self) -> dict[str, Any]:
        """The first (often only) call's result."""
        return self.results[0]

    def check(self) -> "ClientRun":
        """Raise with the client's stderr unless it exited 0 with a JSON result."""
        if self.returncode != 0 or self.output is None:
            raise AssertionError(f"{self.kind} {self.mode} exited {self.returncode}\n"
                                 f"argv: {self.argv}\nstdout: {self.stdout[-3000:]}\n"
                                 f"stderr: {self.stderr[-5000:]}")
        return self


@dataclass
class ClientProcess:
    kind: str
    mode: str
    argv: list[str]
    popen: subprocess.Popen
    api_key: str | None
    timeout: float
    ready: dict[str, Any] | None = field(default=None)
    cleanup: list[str] = field(default_factory=list)  # temp files to delete once it exits

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_ready(self) -> "ClientProcess":
        """Block until a wait_go client has finished its set-up (SDK imported, client built)."""
        if self.ready is None and self.kind != "curl":
            assert self.popen.stdout is not None
            line = self.popen.stdout.readline()  # {"ready": pid}
            try:
                self.ready = json.loads(line)
            except ValueError:
                self.ready = {"ready": None, "unexpected": line}
        return self

    def go(self) -> "ClientProcess":
        """Let a wait_go client make its calls (waits for its set-up first)."""
        self.wait_ready()
        assert self.popen.stdin is not None
        self.popen.stdin.write("go\n")
        self.popen.stdin.flush()
        return self

    def wait(self, timeout: float | None = None) -> ClientRun:
        try:
            out, err = self.popen.communicate(timeout=timeout or self.timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            out, err = self.popen.communicate()
            err += f"\n[tests.support.clients: killed after {timeout or self.timeout}s]"
        for path in self.cleanup:
            try:
                os.unlink(path)
            except OSError:
                pass
        output = None
        for line in reversed(out.splitlines()):
            try:
                parsed = json.loads(line)
            except ValueError:
                continue
            if isinstance(parsed, dict) and "results" in parsed:
                output = parsed
                break
        if output is None and self.kind == "curl" and self.popen.returncode == 0:
            output = {"client": "curl", "mode": self.mode, "pid": self.pid, "results": [{"body": out}]}
        return ClientRun(self.kind, self.mode, self.argv, self.pid, self.popen.returncode, out, err,
                         output, self.api_key)


def client_env(api: FakeApi | None, api_key: str | None = None,
               extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment that makes every kind of client trust the FakeApi's CA."""
    env = dict(os.environ)
    if api is not None and api.certs is not None:
        ca = str(api.certs.ca)
        env.update(SSL_CERT_FILE=ca,  # Python ssl users: httpx2/httpcore2, google-genai, py_raw.py
                   REQUESTS_CA_BUNDLE=ca, NODE_EXTRA_CA_CERTS=ca)
    if api_key:
        env["AGTAP_TEST_API_KEY"] = api_key
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("HTTPS_PROXY", None), env.pop("https_proxy", None)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra or {})
    return env


def big_prompt(size: int) -> str:
    """`size` bytes of ASCII words (same as the client scripts' --prompt-size)."""
    return ("Summarize this log line please. " * (size // 32 + 1))[:size]


def raw_request(mode: str, api_key: str, model: str | None = None,
                text: str = "Say hello.") -> tuple[str, str, dict[str, str], str | None]:
    """(method, path, headers, body) a raw HTTP client sends for `mode`, as the provider docs show."""
    prompt = [{"role": "user", "content": text}]
    json_ct = {"Content-Type": "application/json"}
    if mode.startswith("anthropic"):
        body = {"model": model or "claude-sonnet-5", "max_tokens": 256, "messages": prompt,
                "stream": mode.endswith("stream")}
        return "POST", "/v1/messages", {**json_ct, "x-api-key": api_key,
                                        "anthropic-version": "2023-06-01"}, json.dumps(body)
    if mode.startswith("openai-chat"):
        body = {"model": model or "gpt-5.1", "messages": prompt}
        if mode.endswith("stream"):
            body.update(stream=True, stream_options={"include_usage": True})
        return "POST", "/v1/chat/completions", {**json_ct, "Authorization": f"Bearer {api_key}"}, json.dumps(body)
    if mode == "responses-stream":
        body = {"model": model or "gpt-5.1", "input": text, "stream": True}
        return "POST", "/v1/responses", {**json_ct, "Authorization": f"Bearer {api_key}"}, json.dumps(body)
    if mode.startswith("gemini"):
        body = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
        method = "streamGenerateContent" if "stream" in mode else "generateContent"
        query = "?alt=sse" if mode == "gemini-stream" else ""
        path = f"/v1beta/models/{model or 'gemini-2.5-flash'}:{method}{query}"
        if mode == "gemini-query-key":  # the API also takes the key as ?key= (must be redacted)
            return "POST", f"{path}?key={api_key}", json_ct, json.dumps(body)
        return "POST", path, {**json_ct, "x-goog-api-key": api_key}, json.dumps(body)
    if mode.startswith("vertex"):  # Vertex AI takes an OAuth access token, not an API key
        vertex = "/v1/projects/agtap-test/locations/us-central1/publishers"
        auth = {**json_ct, "Authorization": f"Bearer {api_key}"}
        if mode == "vertex-gemini-stream":
            body = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
            path = f"{vertex}/google/models/{model or 'gemini-2.5-flash'}:streamGenerateContent?alt=sse"
            return "POST", path, auth, json.dumps(body)
        # https://docs.anthropic.com/en/api/claude-on-vertex-ai: no "model" in the body.
        body = {"anthropic_version": "vertex-2023-10-16", "max_tokens": 256, "messages": prompt, "stream": True}
        return "POST", f"{vertex}/anthropic/models/{model or 'claude-sonnet-5'}:streamRawPredict", auth, json.dumps(body)
    if mode == "echo":
        return "POST", "/echo", {"Content-Type": "application/octet-stream",
                                 "Authorization": f"Bearer {api_key}"}, "agtap echo body \u00e9\n"
    if mode == "bulk":
        return "GET", "/bulk/65536", {}, None
    raise ValueError(f"unknown raw mode {mode!r}")


def _sdk_args(mode: str, opts: dict[str, Any]) -> list[str]:
    args = ["--mode", mode, "--repeat", str(opts["repeat"])] + (["--http2"] if opts.get("http2") else [])
    for flag, key in (("--model", "model"), ("--prompt-size", "prompt_size"),
                      ("--parallel", "parallel"), ("--exit-after", "exit_after")):
        if opts.get(key):
            args += [flag, str(opts[key])]
    return args + (["--wait-go"] if opts["wait_go"] else [])


def _body_arg(body: str, cleanup: list[str]) -> str:
    """"@file" for bodies above 64 KiB (one argv string may not exceed 128 KiB) and for
    bodies that start with "@" (curl would read them as a file name); else the body."""
    if len(body) <= 65536 and not body.startswith("@"):
        return body
    fd, path = tempfile.mkstemp(prefix="agtap-body-")
    with os.fdopen(fd, "w") as f:
        f.write(body)
    cleanup.append(path)
    return "@" + path


def _argv(kind: str, api: FakeApi | None, mode: str, key: str, opts: dict[str, Any],
          cleanup: list[str]) -> list[str]:
    wait_go = ["--wait-go"] if opts["wait_go"] else []
    if kind in ("python-anthropic", "python-openai", "python-gemini"):
        script = {"python-anthropic": "py_anthropic.py", "python-openai": "py_openai.py",
                  "python-gemini": "py_gemini.py"}[kind]
        assert api is not None, f"{kind} needs a FakeApi"
        return [PYTHON, str(CLIENTS_DIR / script), "--base-url", api.base_url, *_sdk_args(mode, opts)]
    if kind in ("node-anthropic", "node-openai"):
        assert api is not None, f"{kind} needs a FakeApi"
        script = "anthropic.mjs" if kind == "node-anthropic" else "openai.mjs"
        return [NODE, str(CLIENTS_DIR / script), "--base-url", api.base_url, *_sdk_args(mode, opts)]
    mcp_call = ["--tool", opts["tool"], "--arguments", json.dumps(opts["arguments"] or {})] \
        if opts.get("tool") else []
    if kind == "python-mcp":
        return [PYTHON, str(CLIENTS_DIR / "py_mcp.py"), *mcp_call, *wait_go]
    if kind in ("node-mcp", "node-jsonrpc"):
        script = "mcp_client.mjs" if kind == "node-mcp" else "jsonrpc_child.mjs"
        return [NODE, str(CLIENTS_DIR / script), "--python", PYTHON, *mcp_call, *wait_go]
    assert api is not None, f"{kind} needs a FakeApi"
    prompt = big_prompt(opts["prompt_size"]) if opts.get("prompt_size") else "Say hello."
    method, path, headers, body = raw_request(mode, key, opts.get("model"), prompt)
    body = body if opts.get("body") is None else opts["body"]
    url = api.url(path)
    if kind == "curl":
        version = "--http1.1" if not opts.get("http2") else "--http2" if api.tls else "--http2-prior-knowledge"
        argv = [CURL, "-sS", version, "-X", method]
        argv += ["--cacert", str(api.certs.ca)] if api.tls and api.certs else []
        argv += ["--compressed"] if opts.get("compressed") else []
        for name, value in headers.items():
            argv += ["-H", f"{name}: {value}"]
        if body is not None:
            argv += ["--data-binary", _body_arg(body, cleanup)]
        argv += [url] * opts["repeat"]  # several URLs on one command line share a keep-alive connection
        if opts["wait_go"]:  # exec keeps the pid: the process the test was told about is curl itself
            return ["/bin/sh", "-c", 'read _go; exec "$@"', "sh", *argv]
        return argv
    lib = kind.split("-", 1)[1]
    argv = [PYTHON, str(CLIENTS_DIR / "py_raw.py"), "--lib", lib, "--url", url, "--method", method,
            "--repeat", str(opts["repeat"])]
    for name, value in headers.items():
        argv += ["--header", f"{name}: {value}"]
    if body is not None:
        arg = _body_arg(body, cleanup)
        argv += ["--body-file", arg[1:]] if arg.startswith("@") else ["--body", body]
    return argv + wait_go


def start_client(kind: str, api: FakeApi | None = None, mode: str | None = None, *, repeat: int = 1,
                 model: str | None = None, wait_go: bool = False, compressed: bool = False,
                 body: str | None = None, prompt_size: int = 0, parallel: int = 1, exit_after: int = 0,
                 tool: str | None = None, arguments: dict[str, Any] | None = None,
                 api_key: str | None = None, env: dict[str, str] | None = None,
                 timeout: float = 60.0, http2: bool = False) -> ClientProcess:
    """Start a client process; returns at once (the pid is known before any traffic).

    wait_go: the client sets up (imports, builds its client), then waits for
        ClientProcess.go() before its first call; .wait_ready() blocks until set-up is done.
        Start several with wait_go=True to overlap their (slow) SDK imports.
    repeat: calls made one after another on one client (keep-alive connection reuse).
    parallel: SDK clients only: that many calls in flight at once (several connections).
    prompt_size: send a prompt of this many bytes (large request bodies; all HTTP kinds).
    exit_after: stream modes of python-anthropic/-openai(chat)/-gemini and node-anthropic/
        -openai(chat): the process exits abruptly after that many text deltas.
    body: raw kinds only: send this body instead of the mode's default.
    compressed: curl only: ask for gzip (--compressed); the SDKs always ask.
    http2: python-anthropic/-openai: an HTTP/2 http_client (httpx2, http2=True); curl: --http2
        (ALPN h2) over TLS, --http2-prior-knowledge (h2c) in cleartext. The FakeApi needs http2=True.
    tool, arguments: MCP kinds: the tools/call made (default add {"a": 2, "b": 3}); the
        server (tests/support/mcp_server.py) has add, echo, big(n), fail(message), sleep(seconds).
    """
    if kind not in MODES:
        raise ValueError(f"unknown client kind {kind!r}; known: {sorted(MODES)}")
    mode = mode or MODES[kind][0]
    if mode not in MODES[kind]:
        raise ValueError(f"{kind} has no mode {mode!r}; modes: {MODES[kind]}")
    key = api_key or API_KEYS.get(kind)
    opts = dict(repeat=repeat, model=model, wait_go=wait_go, compressed=compressed, body=body,
                prompt_size=prompt_size, parallel=parallel, exit_after=exit_after, tool=tool,
                arguments=arguments, http2=http2)
    cleanup: list[str] = []
    argv = _argv(kind, api, mode, key or "", opts, cleanup)
    popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=str(CLIENTS_DIR),
                             env=client_env(api, key, env))
    return ClientProcess(kind, mode, argv, popen, key, timeout, cleanup=cleanup)


def run_client(kind: str, api: FakeApi | None = None, mode: str | None = None, **kwargs: Any) -> ClientRun:
    """Run a client to completion; see start_client for the options. Does not raise on
    failure: call .check() (or assert on .returncode) in the test."""
    proc = start_client(kind, api, mode, **kwargs)
    if kwargs.get("wait_go"):
        proc.go()
    return proc.wait()


# Scripts that make a list of calls in one process (one SDK start-up for many calls), each
# taking --base-url and --calls a,b,c: AWS Bedrock (boto3, AnthropicBedrock), Azure OpenAI and
# OpenAI embeddings (openai), google-genai embeddings, Ollama (plain HTTP). See each script.
CALL_SCRIPTS = {"python-bedrock": "py_bedrock.py", "python-azure": "py_azure.py",
                "python-genai-embed": "py_genai_embed.py", "python-ollama": "py_ollama.py"}


def run_calls(kind: str, api: FakeApi, calls: list[str], *, api_key: str | None = None,
              timeout: float = 90.0) -> ClientRun:
    """Run a CALL_SCRIPTS client making `calls` in order; .results has one entry per call."""
    argv = [PYTHON, str(CLIENTS_DIR / CALL_SCRIPTS[kind]), "--base-url", api.base_url, "--calls", ",".join(calls)]
    extra = {"AWS_CA_BUNDLE": str(api.certs.ca)} if api.certs is not None else {}
    popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, cwd=str(CLIENTS_DIR), env=client_env(api, api_key, extra))
    return ClientProcess(kind, "calls", argv, popen, api_key, timeout).wait()
