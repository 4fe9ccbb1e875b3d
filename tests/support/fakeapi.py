"""FakeApi: a local HTTP/1.1 server (TLS or plain) that answers like Anthropic, OpenAI and Gemini.

Written on raw sockets rather than http.server so it can record exactly the bytes that
crossed the connection (`Exchange.raw_request` / `raw_response`): the tracer under test
sees those same bytes through SSL_read/SSL_write, and tests compare them byte for byte.

Routes (by path, like the real APIs; see routes.py):
  POST /v1/messages                                  Anthropic Messages (JSON or SSE)
  POST /v1/chat/completions                          OpenAI Chat Completions
  POST /v1/responses                                 OpenAI Responses
  POST /v1beta/models/{model}:generateContent        Gemini (also /v1/models/...)
  POST /v1beta/models/{model}:streamGenerateContent  Gemini stream (?alt=sse or JSON array)
  POST /v1/projects/P/locations/L/publishers/google/models/{model}:...   Gemini on Vertex AI
  POST /v1/projects/P/locations/L/publishers/anthropic/models/{model}:rawPredict|streamRawPredict
  POST /openai/deployments/{deployment}/chat/completions|responses|embeddings   Azure OpenAI
  POST /openai/responses, /openai/v1/chat/completions|responses|embeddings      (Azure's other forms)
  POST /v1/embeddings                                OpenAI embeddings
  POST /v1beta/models/{model}:embedContent|batchEmbedContents   Gemini embeddings (and Vertex's)
  POST /model/{modelId}/converse|converse-stream|invoke|invoke-with-response-stream   AWS Bedrock
                                                     (streams: AWS event streams; InvokeModel: Claude,
                                                     Titan / Cohere embeddings)
  POST /api/chat, /api/generate, /api/embed          Ollama (streams: NDJSON; plain HTTP in the tests)
  GET  /bulk/{n}                                     n bytes of filler ("unrelated traffic")
  POST /echo                                         the request body, unchanged
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections import deque
from email.utils import formatdate
from urllib.parse import parse_qs, urlsplit

from . import pacing, routes
from .certs import CertPaths
from .exchange import Exchange
from .h2serve import PREFACE, H2Server
from .reply import Planned, Reply

REASONS = {100: "Continue", 200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
           404: "Not Found", 413: "Payload Too Large", 429: "Too Many Requests",
           500: "Internal Server Error", 503: "Service Unavailable", 504: "Gateway Timeout",
           529: "Overloaded"}


class _Closed(Exception):
    pass


class _Reader:
    """Buffered reads from a socket that remember every byte consumed (for raw_request)."""

    def __init__(self, sock: socket.socket):
        self.sock, self.buf, self.taken = sock, bytearray(), bytearray()
        self.first_ns = 0  # monotonic time the current request's first byte was received

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise _Closed()
        if not self.buf and not self.taken:
            self.first_ns = time.monotonic_ns()
        self.buf += data

    def until(self, marker: bytes, limit: int = 1 << 20) -> bytes:
        while (i := self.buf.find(marker)) < 0:
            if len(self.buf) > limit:
                raise _Closed()
            self._fill()
        return self.exactly(i + len(marker))

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        self.taken += out
        return out

    def take_record(self) -> bytes:
        out, self.taken = bytes(self.taken), bytearray()
        # Bytes already buffered belong to the next request (pipelining): it started now.
        self.first_ns = time.monotonic_ns() if self.buf else 0
        return out


class FakeApi:
    """Start with `with FakeApi(certs) as api:`; script with `api.script(Reply(...))`."""

    def __init__(self, certs: CertPaths | None = None, *, tls: bool = True, host: str = "127.0.0.1",
                 port: int = 0, idle_timeout: float = 30.0, http2: bool = False):
        if tls and certs is None:
            raise ValueError("FakeApi(tls=True) needs certs (tests.support.certs.make_certs)")
        self.certs, self.tls, self.host, self.idle_timeout = certs, tls, host, idle_timeout
        self.http2 = http2  # also HTTP/2: "h2" in ALPN, h2c prior knowledge, Upgrade: h2c (h2serve.py)
        self.keep_bulk = True  # False: HTTP/2 exchanges of GET /bulk/ keep no response body (benchmarks)
        self.default = Reply()  # used when the script queue is empty
        self.exchanges: list[Exchange] = []  # in completion order; wait_for() sorts by arrival
        # Connections that failed before a request was read (TLS handshake refused: the
        # client did not trust the CA, spoke HTTP to the TLS port, ...): (conn, error text).
        self.connection_errors: list[tuple[int, str]] = []
        self.connections = 0  # connections accepted so far
        self._queue: deque[Reply] = deque()
        self._lock = threading.Condition()
        self._conns: set[socket.socket] = set()
        self._seq = self._conn_seq = 0
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.port = port  # 0 until start(): then the bound (ephemeral) port

    # ------------------------------------------------------------------ public API
    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def script(self, *replies: Reply) -> "FakeApi":
        """Queue replies; each LLM request takes the next one (then `self.default`)."""
        with self._lock:
            self._queue.extend(replies)
        return self

    def reset(self) -> None:
        """Forget recorded exchanges and queued replies (for a FakeApi shared by several tests)."""
        with self._lock:
            self.exchanges.clear()
            self.connection_errors.clear()
            self._queue.clear()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Exchange]:
        """Block until `count` exchanges have completed; return them all in arrival order.

        Use this rather than reading `exchanges` right after a client exits: the client can
        exit as soon as it has read the last byte, before the server thread records it."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.exchanges) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"fake API saw {len(self.exchanges)} exchanges, wanted {count}")
                self._lock.wait(left)
            return sorted(self.exchanges, key=lambda ex: ex.seq)

    def start(self) -> "FakeApi":
        ctx = None
        if self.tls:
            assert self.certs is not None
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.certs.cert, self.certs.key)
            ctx.set_alpn_protocols(["h2", "http/1.1"] if self.http2 else ["http/1.1"])
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        self._listener, self.port = listener, listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, args=(ctx,), daemon=True,
                                        name=f"fakeapi-{self.port}")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "FakeApi":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ connections
    def _accept_loop(self, ctx: ssl.SSLContext | None) -> None:
        while self._listener is not None:
            try:
                raw, addr = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._conn_seq += 1
                conn_no = self.connections = self._conn_seq
            threading.Thread(target=self._serve_connection, args=(raw, addr, ctx, conn_no),
                             daemon=True).start()

    def _serve_connection(self, raw: socket.socket, addr: tuple, ctx: ssl.SSLContext | None,
                          conn_no: int) -> None:
        raw.settimeout(self.idle_timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._conns.add(raw)
        sock: socket.socket = raw
        served = 0
        try:
            if ctx is not None:
                # wrap_socket detaches `raw`: track the TLS socket so stop() can shut it down.
                sock = ctx.wrap_socket(raw, server_side=True)
                with self._lock:
                    self._conns.discard(raw)
                    self._conns.add(sock)
            if self._speaks_h2(sock):
                H2Server(self, sock, addr, conn_no).serve()
                return
            reader = _Reader(sock)
            while self._serve_one(sock, reader, addr, conn_no):
                served += 1
        except _Closed:
            pass
        except (OSError, ssl.SSLError) as e:
            if not served and self._listener is not None:
                with self._lock:
                    self.connection_errors.append((conn_no, repr(e)))
        finally:
            with self._lock:
                self._conns.discard(raw)
                self._conns.discard(sock)
            try:
                sock.close()
            except OSError:
                pass

    def _speaks_h2(self, sock: socket.socket) -> bool:
        """HTTP/2 from the first byte: "h2" chosen in ALPN, or (cleartext) the client preface."""
        if not self.http2:
            return False
        if self.tls:
            return sock.selected_alpn_protocol() == "h2"
        # every HTTP/1.1 request is longer than the preface: waiting for 24 bytes never hangs
        return sock.recv(len(PREFACE), socket.MSG_PEEK | socket.MSG_WAITALL) == PREFACE

    def _serve_one(self, sock: socket.socket, reader: _Reader, addr: tuple, conn_no: int) -> bool:
        head = reader.until(b"\r\n\r\n")
        lines = head[:-4].decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:] if line]
        ex = Exchange(seq=0, conn=conn_no, client_port=addr[1], method=method, target=target,
                      headers=headers)  # type: ignore[arg-type]
        parts = urlsplit(target)
        ex.path, ex.query = parts.path, parse_qs(parts.query)
        sent = bytearray()
        if (ex.header("expect") or "").lower() == "100-continue":
            cont = b"HTTP/1.1 100 Continue\r\n\r\n"
            sock.sendall(cont)
            sent += cont
        ex.body = self._read_body(reader, ex)
        ex.ns_request_start = reader.first_ns
        ex.raw_request = reader.take_record()
        ex.t_request, ex.ns_request = time.time(), time.monotonic_ns()
        if self.http2 and (ex.header("upgrade") or "").lower() == "h2c" and ex.header("http2-settings"):
            # RFC 7540 3.2: 101, then this request is stream 1 of an HTTP/2 connection
            sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
            H2Server(self, sock, addr, conn_no).serve(bytes(reader.buf), (ex, ex.header("http2-settings")))
            return False
        with self._lock:
            self._seq += 1
            ex.seq = self._seq
        keep_alive = version == "HTTP/1.1" and (ex.header("connection") or "").lower() != "close"
        planned, stream = routes.plan(ex, self._next_reply)
        if ex.reply is not None and ex.reply.close:
            keep_alive = False
        if ex.reply is not None and ex.reply.drop_after is not None:
            keep_alive = False
        try:
            self._respond(sock, ex, planned, stream, keep_alive, sent)
        except (OSError, ssl.SSLError) as e:
            # The client went away mid-response (killed, exit_after): record what was sent.
            ex.client_gone, keep_alive = repr(e), False
            ex.raw_response = bytes(sent)
            if ex.events and not ex.response_body:
                ex.response_body = b"".join(ex.events)
            ex.t_done, ex.ns_done = time.time(), time.monotonic_ns()
        with self._lock:
            self.exchanges.append(ex)
            self._lock.notify_all()
        return keep_alive

    @staticmethod
    def _read_body(reader: _Reader, ex: Exchange) -> bytes:
        if "chunked" in (ex.header("transfer-encoding") or "").lower():
            body = bytearray()
            while True:
                size = int(reader.until(b"\r\n")[:-2].split(b";")[0], 16)
                if size == 0:
                    reader.until(b"\r\n")  # no trailers are expected; eat the final CRLF
                    return bytes(body)
                body += reader.exactly(size)
                reader.exactly(2)
        return reader.exactly(int(ex.header("content-length") or 0))

    # ------------------------------------------------------------------ routing
    def _next_reply(self, path: str) -> Reply:
        with self._lock:
            for reply in self._queue:
                if reply.route is None or reply.route in path:
                    self._queue.remove(reply)
                    return reply
            return self.default

    # ------------------------------------------------------------------ responses
    def _respond(self, sock: socket.socket, ex: Exchange, planned: Planned, stream: bool,
                 keep_alive: bool, sent: bytearray) -> None:
        reply = ex.reply or Reply()
        if reply.delay:
            time.sleep(reply.delay)
        streaming, use_gzip = pacing.choose(ex, planned, reply)
        headers = [("Date", formatdate(usegmt=True)), ("Content-Type", planned.content_type)]
        headers += planned.headers + list(reply.headers.items())
        if use_gzip:
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Connection", "keep-alive" if keep_alive else "close"))

        def write(data: bytes) -> None:
            if not ex.t_first_byte:
                ex.t_first_byte, ex.ns_first_byte = time.time(), time.monotonic_ns()
            sock.sendall(data)
            sent.extend(data)

        if not streaming:
            wire = pacing.whole_body(ex, planned, use_gzip)
            headers.append(("Content-Length", str(len(wire))))
            ex.response_headers = headers
            if reply.drop_after is not None:
                wire, ex.dropped = wire[:len(wire) // 2], True
            write(self._head(planned.status, headers) + wire)
        else:
            headers.append(("Transfer-Encoding", "chunked"))
            ex.response_headers = headers
            write(self._head(planned.status, headers))
            for batch in pacing.batches(ex, planned, reply, use_gzip):
                data = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in batch.pieces)
                end = batch.last and not ex.dropped
                if end and reply.batch > 1:
                    data += b"0\r\n\r\n"  # a batching server sends the final chunk with the last events
                if data:
                    write(data)
                ex.events.extend(batch.events)  # after the write: `events` = what was sent
                if end and reply.batch <= 1:
                    write(b"0\r\n\r\n")
            ex.response_body = b"".join(ex.events)
        ex.raw_response = bytes(sent)
        ex.t_done, ex.ns_done = time.time(), time.monotonic_ns()

    @staticmethod
    def _head(status: int, headers: list[tuple[str, str]]) -> bytes:
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
        lines += [f"{k}: {v}" for k, v in headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
