"""A lean TLS server answering like the LLM APIs, for benchmarks (not tests).

tests/support's FakeApi records every exchange (all bytes, in memory) and plans each
answer per request: right for tests, too heavy for a load test. This server renders each
answer once (with tests.support's provider shapes, so the bytes are the real wire format),
then replays it: one SSL_write per SSE event (chunked transfer encoding, as FakeApi and
the real APIs do), keep-alive, no artificial delays.

    python -m bench.server --certs DIR [--procs N] [--events 200]

Prints {"port", "ca", "pids"} once listening; serves until SIGTERM. --procs N forks N
accept processes on one listening socket (the GIL would otherwise cap the load test).

Routes (POST unless said): /v1/messages (Anthropic; "stream": true -> SSE),
/v1/chat/completions (OpenAI), /v1beta/models/M:generateContent and
:streamGenerateContent?alt=sse (Gemini), GET /bulk/N (N filler bytes).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import ssl
import sys
import threading
from email.utils import formatdate

from tests.support.certs import make_certs
from tests.support.reply import Reply
from tests.support import shapes_anthropic, shapes_gemini, shapes_openai

# One answer per route; output tokens = text pieces, so a load test can check token sums.
EVENTS = 200
WORD = "tok "   # one text delta per word


def reply_for(events: int) -> Reply:
    # Anthropic framing adds 6 events around the deltas (start, block start, ping, block stop, delta, stop).
    n = max(1, events - 6)
    return Reply(text=WORD * n, events=n, input_tokens=25, output_tokens=n)


def render(planned, keep_alive: bool = True) -> tuple[bytes, list[bytes]]:
    """(head, writes): the response head and the body's writes, chunked for streams."""
    headers = [("Date", formatdate(usegmt=True)), ("Content-Type", planned.content_type)] + planned.headers
    headers.append(("Connection", "keep-alive" if keep_alive else "close"))
    if planned.events is None:
        body = planned.body or b""
        headers.append(("Content-Length", str(len(body))))
        head = "HTTP/1.1 200 OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
        return head.encode() + body, []
    headers.append(("Transfer-Encoding", "chunked"))
    head = "HTTP/1.1 200 OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    writes = [b"%x\r\n%s\r\n" % (len(e), e) for e in planned.events] + [b"0\r\n\r\n"]
    return head.encode(), writes


def answers(events: int = EVENTS) -> dict[tuple[str, bool], tuple[bytes, list[bytes]]]:
    r = reply_for(events)
    a_req = {"model": "claude-sonnet-4-5"}
    o_req = {"model": "gpt-4.1", "stream_options": {"include_usage": True}}
    out = {}
    for stream in (False, True):
        out[("anthropic", stream)] = render(shapes_anthropic.messages(r, a_req, 1, stream))
        out[("openai", stream)] = render(shapes_openai.chat(r, o_req, 1, stream))
        out[("gemini", stream)] = render(shapes_gemini.generate(r, "gemini-2.5-flash", 1, stream, True))
    return out


def route(path: str, body: bytes) -> tuple[str, bool] | None:
    stream = b'"stream": true' in body or b'"stream":true' in body
    if path == "/v1/messages":
        return "anthropic", stream
    if path == "/v1/chat/completions":
        return "openai", stream
    if ":streamGenerateContent" in path:
        return "gemini", True
    if ":generateContent" in path:
        return "gemini", False
    return None


def serve_conn(sock: socket.socket, ctx: ssl.SSLContext, table: dict) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s = ctx.wrap_socket(sock, server_side=True)
        buf = b""
        while True:
            while (i := buf.find(b"\r\n\r\n")) < 0:
                d = s.recv(65536)
                if not d:
                    return
                buf += d
            head, buf = buf[:i].decode("latin-1"), buf[i + 4:]
            lines = head.split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            clen = 0
            for ln in lines[1:]:
                if ln[:15].lower() == "content-length:":
                    clen = int(ln[15:])
            while len(buf) < clen:
                d = s.recv(65536)
                if not d:
                    return
                buf += d
            body, buf = buf[:clen], buf[clen:]
            if method == "GET" and target.startswith("/bulk/"):
                n = int(target[6:])
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                          b"Content-Length: %d\r\n\r\n" % n + BULK[:n] if n <= len(BULK) else b"")
                continue
            key = route(target.split("?", 1)[0], body)
            if key is None:
                s.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                continue
            first, writes = table[key]
            s.sendall(first)
            for w in writes:
                s.sendall(w)
    except (OSError, ssl.SSLError, ValueError):
        pass
    finally:
        try:
            sock.close()
        except OSError:
            pass


BULK = (b"agtap-bulk-filler-" * (4 * 1024 * 1024 // 18 + 1))[:4 * 1024 * 1024]


def accept_loop(lsock: socket.socket, ctx: ssl.SSLContext, table: dict) -> None:
    while True:
        try:
            c, _ = lsock.accept()
        except OSError:
            return
        threading.Thread(target=serve_conn, args=(c, ctx, table), daemon=True).start()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.server")
    p.add_argument("--certs", required=True)
    p.add_argument("--procs", type=int, default=1)
    p.add_argument("--events", type=int, default=EVENTS)
    args = p.parse_args(argv)
    certs = make_certs(args.certs)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs.cert, certs.key)
    ctx.set_alpn_protocols(["http/1.1"])
    table = answers(args.events)
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(512)
    pids = [os.getpid()]
    for _ in range(args.procs - 1):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            accept_loop(lsock, ctx, table)
            os._exit(0)
        pids.append(pid)

    def stop(*_):
        for pid in pids[1:]:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(json.dumps({"port": lsock.getsockname()[1], "ca": str(certs.ca), "pids": pids}), flush=True)
    accept_loop(lsock, ctx, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
