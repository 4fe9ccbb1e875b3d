"""Open-loop load generator: raw HTTP/1.1 and HTTP/2 over TLS (ssl + sockets), threads, keep-alive.

    python -m bench.loadgen --port P --ca CA --rate R --duration S [--threads T]
        [--offset K --stride N] [--h2-every M] [--tag-model] [--calls-out FILE]

Call i is due at t0 + i/R (this process takes calls offset, offset+stride, ... so N
processes share one schedule); a free thread takes the next due call, so a slow answer
delays only its own thread. The mix cycles through Anthropic, OpenAI and Gemini, streamed
and not (6 kinds); with --h2-every M, every M-th round of the 6 goes over HTTP/2 (python3-h2,
one connection per thread beside its HTTP/1.1 one, a stream per call). --tag-model gives every call its own model name (model-c<i>) so an
event can be matched to its call; --calls-out writes one JSON line per call: i, model,
stream, start and last-byte wall ns (time.time_ns() right after the last read).
Prints one JSON summary line.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import threading
import time

COMM = "agtap-bench-lg"   # the tracer under test is run with -c agtap-bench-lg: calls made by
                          # other processes on a shared machine are not in the measurement


def set_comm(name: str) -> None:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(15, name.encode()[:15], 0, 0, 0)   # PR_SET_NAME


KINDS = (("anthropic", True), ("openai", False), ("gemini", True), ("anthropic", False), ("openai", True),
         ("gemini", False))


def request(i: int, provider: str, stream: bool, tag: bool) -> tuple[bytes, str]:
    if provider == "anthropic":
        model = "claude-sonnet-4-5"
        path, hdr = "/v1/messages", "x-api-key: sk-ant-bench\r\nanthropic-version: 2023-06-01\r\n"
    elif provider == "openai":
        model = "gpt-4.1"
        path, hdr = "/v1/chat/completions", "authorization: Bearer sk-bench\r\n"
    else:
        model = "gemini-2.5-flash"
        path = f"/v1beta/models/{{m}}:{'streamGenerateContent?alt=sse' if stream else 'generateContent'}"
        hdr = "x-goog-api-key: AIzaBench\r\n"
    if tag:
        model = f"{model}-c{i}"
    path = path.replace("{m}", model)
    if provider == "gemini":
        body = {"contents": [{"role": "user", "parts": [{"text": "Say hello."}]}]}
    else:
        body = {"model": model, "messages": [{"role": "user", "content": "Say hello."}], "stream": stream}
        if provider == "anthropic":
            body["max_tokens"] = 256
        if provider == "openai" and stream:
            body["stream_options"] = {"include_usage": True}
    b = json.dumps(body).encode()
    head = (f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n{hdr}"
            f"content-length: {len(b)}\r\n\r\n").encode()
    return head + b, model


def read_response(s: ssl.SSLSocket) -> int:
    """Read one response (Content-Length or chunked); returns its size."""
    buf = b""
    while (i := buf.find(b"\r\n\r\n")) < 0:
        d = s.recv(65536)
        if not d:
            raise ConnectionError("closed")
        buf += d
    head = buf[:i].lower()
    rest = buf[i + 4:]
    if b"transfer-encoding: chunked" in head:
        while not rest.endswith(b"0\r\n\r\n"):
            d = s.recv(65536)
            if not d:
                raise ConnectionError("closed")
            rest += d
        return i + 4 + len(rest)
    j = head.find(b"content-length:")
    n = int(head[j + 15:].split(b"\r\n", 1)[0])
    while len(rest) < n:
        d = s.recv(65536)
        if not d:
            raise ConnectionError("closed")
        rest += d
    return i + 4 + len(rest)


class H2Client:
    """One HTTP/2 TLS connection (python3-h2), a call at a time: a stream each."""

    def __init__(self, host: str, port: int, ctx: ssl.SSLContext):
        import h2.config
        import h2.connection
        raw = socket.create_connection((host, port), timeout=30)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.s = ctx.wrap_socket(raw, server_hostname="localhost")
        if self.s.selected_alpn_protocol() != "h2":
            raise ConnectionError("the server did not choose h2")
        self.authority = f"{host}:{port}"
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.s.sendall(self.conn.data_to_send())

    def call(self, req: bytes) -> int:
        """`req` is the HTTP/1.1 request: the same method, path, headers and body go as a stream."""
        import h2.events
        head, _, body = req.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = [(":method", method), (":scheme", "https"), (":authority", self.authority), (":path", path)]
        headers += [tuple(ln.split(": ", 1)) for ln in lines[1:] if not ln.lower().startswith("host:")]
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, headers)
        self.conn.send_data(sid, body, end_stream=True)
        self.s.sendall(self.conn.data_to_send())
        got = 0
        while True:
            d = self.s.recv(65536)
            if not d:
                raise ConnectionError("closed")
            for ev in self.conn.receive_data(d):
                if isinstance(ev, h2.events.DataReceived):
                    got += len(ev.data)
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                    raise ConnectionError(f"stream reset: {ev.error_code}")
                elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                    self.s.sendall(self.conn.data_to_send())
                    return got
            out = self.conn.data_to_send()
            if out:
                self.s.sendall(out)

    def close(self) -> None:
        self.s.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--rate", type=float, required=True, help="calls/s of the whole schedule")
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--stride", type=int, default=1)
    p.add_argument("--h2-every", type=int, default=0, metavar="M",
                   help="every M-th round of the 6 kinds over HTTP/2 (0: none)")
    p.add_argument("--tag-model", action="store_true")
    p.add_argument("--calls-out")
    p.add_argument("--start-at", type=float, default=0.0, help="wall time to start (shared by processes)")
    p.add_argument("--comm", default=COMM, help="thread name (comm) for the tracer's -c filter")
    a = p.parse_args(argv)
    set_comm(a.comm)   # before the threads start: they inherit it
    ctx = ssl.create_default_context(cafile=a.ca)
    ctx.set_alpn_protocols(["http/1.1"])
    ctx_h2 = ssl.create_default_context(cafile=a.ca)
    ctx_h2.set_alpn_protocols(["h2"])
    lock = threading.Lock()
    nxt = [a.offset]
    total = int(a.rate * a.duration)
    st = {"made": 0, "ok": 0, "errors": 0, "by_kind": {}, "late_ms": []}
    calls = []
    if a.start_at:
        time.sleep(max(0.0, a.start_at - time.time()))
    t0 = time.monotonic()
    hard_stop = t0 + a.duration + 30

    def worker():
        s = None
        h2c = None
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += a.stride
            if i >= total:
                break
            due = t0 + i / a.rate
            now = time.monotonic()
            if now > hard_stop:
                break
            if due > now:
                time.sleep(due - now)
            provider, stream = KINDS[(i // a.stride) % len(KINDS)]
            over_h2 = a.h2_every > 0 and (i // a.stride) // len(KINDS) % a.h2_every == a.h2_every - 1
            req, model = request(i, provider, stream, a.tag_model)
            late = (time.monotonic() - due) * 1000
            ok = False
            for _attempt in range(2):
                try:
                    if over_h2:
                        if h2c is None:
                            h2c = H2Client(a.host, a.port, ctx_h2)
                        t_start = time.time_ns()
                        h2c.call(req)
                    else:
                        if s is None:
                            raw = socket.create_connection((a.host, a.port), timeout=30)
                            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                            s = ctx.wrap_socket(raw, server_hostname="localhost")
                        t_start = time.time_ns()
                        s.sendall(req)
                        read_response(s)
                    t_last = time.time_ns()
                    ok = True
                    break
                except Exception as e:   # OSError, ssl.SSLError, ValueError, h2's protocol errors
                    if not isinstance(e, (OSError, ValueError)) and type(e).__module__.split(".")[0] != "h2":
                        raise
                    try:   # the connection that failed is made again for the retry
                        (h2c if over_h2 else s) and (h2c if over_h2 else s).close()
                    except OSError:
                        pass
                    if over_h2:
                        h2c = None
                    else:
                        s = None
            with lock:
                st["made"] += 1
                st["late_ms"].append(late)
                if ok:
                    st["ok"] += 1
                    k = f"{provider}-{'stream' if stream else 'json'}{'-h2' if over_h2 else ''}"
                    st["by_kind"][k] = st["by_kind"].get(k, 0) + 1
                    if a.calls_out:
                        calls.append({"i": i, "model": model, "provider": provider, "stream": stream, "h2": over_h2,
                                      "t_start_ns": t_start, "t_last_ns": t_last})
                else:
                    st["errors"] += 1
        if s is not None:
            s.close()
        if h2c is not None:
            h2c.close()

    ts = [threading.Thread(target=worker, daemon=True) for _ in range(a.threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(a.duration + 60)
    elapsed = time.monotonic() - t0
    late = sorted(st.pop("late_ms"))
    if a.calls_out:
        with open(a.calls_out, "w") as f:
            for c in calls:
                f.write(json.dumps(c) + "\n")
    print(json.dumps({"pid": os.getpid(), "elapsed": elapsed, "scheduled": len(range(a.offset, total, a.stride)),
                      **st, "late_p50_ms": late[len(late) // 2] if late else None,
                      "late_p99_ms": late[int(len(late) * 0.99)] if late else None,
                      "late_max_ms": late[-1] if late else None}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
