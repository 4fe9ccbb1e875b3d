"""A lean TLS server answering like the LLM APIs, for benchmarks (not tests).

tests/support's FakeApi records every exchange (all bytes, in memory) and plans each
answer per request: right for tests, too heavy for a load test. This server renders each
answer once (with tests.support's provider shapes, so the bytes are the real wire format),
then replays it: one SSL_write per SSE event (chunked transfer encoding, as FakeApi and
the real APIs do), keep-alive, no artificial delays.

    python -m bench.server --certs DIR [--procs N] [--events 200]

Prints {"port", "ca", "pids"} once listening; serves until SIGTERM. --procs N forks N
accept processes on one listening socket (the GIL would otherwise cap the load test).
HTTP/1.1, or HTTP/2 when the client offers "h2" by ALPN (python3-h2: the same answers,
one DATA frame per SSE event, as the real APIs' HTTP/2 front ends send them).

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


def planned_answers(events: int = EVENTS) -> dict:
    r = reply_for(events)
    a_req = {"model": "claude-sonnet-4-5"}
    o_req = {"model": "gpt-4.1", "stream_options": {"include_usage": True}}
    out = {}
    for stream in (False, True):
        out[("anthropic", stream)] = shapes_anthropic.messages(r, a_req, 1, stream)
        out[("openai", stream)] = shapes_openai.chat(r, o_req, 1, stream)
        out[("gemini", stream)] = shapes_gemini.generate(r, "gemini-2.5-flash", 1, stream, True)
    return out


def answers(events: int = EVENTS) -> dict[tuple[str, bool], tuple[bytes, list[bytes]]]:
    return {k: render(v) for k, v in planned_answers(events).items()}


def answers_h2(events: int = EVENTS) -> dict[tuple[str, bool], tuple[list[tuple[str, str]], list[bytes]]]:
    """(response headers, DATA payloads): the body whole, or one payload per SSE event."""
    out = {}
    for k, planned in planned_answers(events).items():
        headers = [(":status", "200"), ("content-type", planned.content_type)] + [
            (n.lower(), v) for n, v in planned.headers if n.lower() not in ("connection", "transfer-encoding")]
        out[k] = (headers, [planned.body or b""] if planned.events is None else list(planned.events))
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


def serve_h2(s: ssl.SSLSocket, table: dict) -> None:
    """One HTTP/2 connection: every stream answered when its request has ended, in turn."""
    import h2.config
    import h2.connection
    import h2.events
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    conn.initiate_connection()
    s.sendall(conn.data_to_send())
    reqs: dict[int, list] = {}   # stream id -> [path, body]
    while True:
        d = s.recv(65536)
        if not d:
            return
        for ev in conn.receive_data(d):
            if isinstance(ev, h2.events.RequestReceived):
                reqs[ev.stream_id] = [dict(ev.headers).get(":path", ""), b""]
            elif isinstance(ev, h2.events.DataReceived):
                reqs[ev.stream_id][1] += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                path, body = reqs.pop(ev.stream_id)
                key = route(path.split("?", 1)[0], body)
                if key is None:
                    conn.send_headers(ev.stream_id, [(":status", "404")], end_stream=True)
                    continue
                headers, payloads = table[key]
                conn.send_headers(ev.stream_id, headers)
                s.sendall(conn.data_to_send())
                for i, p in enumerate(payloads):   # one write per event, as for HTTP/1.1
                    conn.send_data(ev.stream_id, p, end_stream=i == len(payloads) - 1)
                    s.sendall(conn.data_to_send())
        out = conn.data_to_send()
        if out:
            s.sendall(out)


def serve_conn(sock: socket.socket, ctx: ssl.SSLContext, table: dict, table_h2: dict) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s = ctx.wrap_socket(sock, server_side=True)
        if s.selected_alpn_protocol() == "h2":
            serve_h2(s, table_h2)
            return
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
    except (OSError, ssl.SSLError, ValueError, KeyError):
        pass
    except Exception as e:   # h2's protocol errors: this connection ends, the server goes on
        if type(e).__module__.split(".")[0] != "h2":
            raise
    finally:
        try:
            sock.close()
        except OSError:
            pass


BULK = (b"agtap-bulk-filler-" * (4 * 1024 * 1024 // 18 + 1))[:4 * 1024 * 1024]


def accept_loop(lsock: socket.socket, ctx: ssl.SSLContext, table: dict, table_h2: dict) -> None:
    while True:
        try:
            c, _ = lsock.accept()
        except OSError:
            return
        threading.Thread(target=serve_conn, args=(c, ctx, table, table_h2), daemon=True).start()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.server")
    p.add_argument("--certs", required=True)
    p.add_argument("--procs", type=int, default=1)
    p.add_argument("--events", type=int, default=EVENTS)
    args = p.parse_args(argv)
    certs = make_certs(args.certs)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs.cert, certs.key)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    table, table_h2 = answers(args.events), answers_h2(args.events)
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(512)
    pids = [os.getpid()]
    for _ in range(args.procs - 1):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            accept_loop(lsock, ctx, table, table_h2)
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
    accept_loop(lsock, ctx, table, table_h2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
