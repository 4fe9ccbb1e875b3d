"""Every test helper, in one package; this module: a local TLS fake LLM API and the official
clients that call it. Submodules: harness (a Pipeline fed crafted chunks; chunk(), the one
Chunk factory), agtapd (the real tracer/daemon for the bpf tier), dbus (private buses, test
users, the service with the FakeTracer), obs (Prometheus, OTLP), tui (the real service for the
dashboard tests, tmux), nspawn (the system tier's container), paths (REPO, PY).

Every end-to-end test uses the same three pieces. tests/conftest.py provides the fixtures
`certs` (session CA), `fake_api` (TLS) and `fake_api_plain` (plain HTTP).

1. Start the fake API (or take the `fake_api` fixture)::

       from tests.support import FakeApi, Reply, ToolCall, make_certs, run_client, start_client
       certs = make_certs(tmp_path)                 # ca.pem, cert.pem, key.pem
       with FakeApi(certs) as api:                  # https://127.0.0.1:<port>, keep-alive
           ...                                      # FakeApi(tls=False) for plain http

   Routes: POST /v1/messages (Anthropic), /v1/chat/completions and /v1/responses
   (OpenAI), /v1beta/models/{model}:generateContent|streamGenerateContent[?alt=sse]
   (Gemini; also Vertex AI's .../publishers/google/models/{model}:...), Vertex AI's
   .../publishers/anthropic/models/{model}:rawPredict|streamRawPredict (Claude), Azure
   OpenAI /openai/deployments/{d}/chat/completions|responses|embeddings (and /openai/v1/...),
   /v1/embeddings, Gemini :embedContent|:batchEmbedContents, AWS Bedrock
   /model/{id}/converse|converse-stream|invoke|invoke-with-response-stream (event streams:
   tests/support/eventstream.py), Ollama /api/chat|generate|embed (NDJSON), GET /bulk/{n}
   (n filler bytes), POST /echo (body echoed back). Only http/1.1 is offered in ALPN unless
   FakeApi(http2=True): then also HTTP/2 (ALPN h2, h2c prior knowledge, Upgrade: h2c;
   see h2serve.py), each stream an Exchange as above.

2. Script what the LLM routes answer, in order (then `api.default`)::

       api.script(Reply(text="Hi there", input_tokens=30, output_tokens=4,
                        cache_read_input_tokens=10, model="claude-x"),
                  Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"})]),
                  Reply(status=429),                      # provider's own error body
                  Reply(events=50, event_size=4096, event_delay=0.01),  # big / slow SSE
                  Reply(stream_error=True),               # error event inside the stream
                  Reply(route=":streamGenerateContent"),  # only for that path
                  Reply(events=10, drop_after=4),         # server cuts the connection
                  Reply(events=30, batch=10))             # 10 events per write / TLS record
   Replies are taken in order by LLM requests (the first whose `route` matches the path);
   `api.reset()` forgets the queue and the record.
   Streaming follows the request ("stream": true, or :streamGenerateContent) unless
   Reply.stream says otherwise. Bodies are gzipped when the client sends
   Accept-Encoding: gzip (non-streaming by default; Reply(gzip=True) for streams too).
   Streams end with the chunked terminator "0\r\n\r\n" in a write of its own (unless
   batch > 1), as real servers often do: an SDK that stops at the last event (openai's
   `data: [DONE]`) may close the connection before reading it.

3. Run an official client in its own process (the tracer must see a separate pid)::

       run = run_client("python-anthropic", api, "stream").check()
       run.pid, run.returncode, run.result["text"], run.result["output_tokens"]
       proc = start_client("node-openai", api, "chat-stream", wait_go=True)
       ...                                   # proc.pid is known, no traffic yet
       run = proc.go().wait().check()
   Options (start_client): repeat=N (keep-alive reuse), parallel=N (N connections at
   once), prompt_size=BYTES (large request), exit_after=K (die after K stream deltas),
   model=..., compressed=True (curl gzip), body=... (raw kinds), api_key=..., env=...
   Kinds and modes: clients.MODES. Each kind sends its own fake key (clients.API_KEYS,
   in the header clients.KEY_HEADER names) so secret-stripping tests can grep for it.
   MCP kinds (python-mcp, node-mcp, node-jsonrpc) need no FakeApi: run_client("python-mcp").
   clients.run_calls("python-bedrock" | "python-azure" | "python-genai-embed" | "python-ollama",
   api, ["converse", "converse-stream", ...]) runs one process that makes those calls in order
   (one SDK start-up for many calls): .results has one entry per call.
   Process names (comm): python-* run as "python" (this venv's bin/python), node-* as
   "node", curl as "curl" (as "sh" until go() when wait_go=True: it is exec'd then).
   tests.support.cases.LLM_CASES / MCP_CASES: every (kind, mode) with the provider,
   operation, streaming and path the tracer should report, for parametrizing;
   VERTEX_CASES (Vertex AI) and OTHER_CASES (Azure OpenAI `api-key`, Gemini `?key=`).

4. Read what crossed the wire::

       ex = api.wait_for(1)[0]               # Exchange, in arrival order
       ex.method, ex.path, ex.query, ex.headers, ex.body, ex.json()
       ex.status, ex.response_headers, ex.response_body (decoded), ex.events (SSE events)
       ex.raw_request, ex.raw_response       # exact bytes read / written on the socket
       ex.conn                               # same number = same keep-alive connection
       ex.reply                              # the Reply used
       ex.sse_data()                         # the SSE `data:` payloads, JSON-decoded
       api.connection_errors                 # (conn, error) for failed TLS handshakes
       ex.dropped, ex.client_gone            # response cut by the server / client vanished
       ex.ns_request_start, ex.ns_request, ex.ns_first_byte, ex.ns_first_event, ex.ns_done
                                             # CLOCK_MONOTONIC, the clock bpf_ktime_get_ns reads
   Exchanges are recorded when the response's last byte is written, which can be just
   after the client exits: use api.wait_for(n), not api.exchanges, after a client run.

The fake API runs inside the test process, so its server-side SSL_read/SSL_write happen in
the pytest pid; tell the tracer to watch the client's pid (ClientRun.pid) or its comm.
`python -m tests.support.serve` runs a FakeApi as a process of its own (manual runs, bench).
"""

from .certs import CertPaths, make_certs
from .clients import API_KEYS, KEY_HEADER, MODES, ClientProcess, ClientRun, run_client, start_client
from .exchange import Exchange
from .fakeapi import FakeApi
from .reply import Reply, ToolCall

__all__ = [
    "API_KEYS", "KEY_HEADER", "MODES", "CertPaths", "ClientProcess", "ClientRun", "Exchange",
    "FakeApi", "Reply", "ToolCall", "make_certs", "run_client", "start_client",
]
