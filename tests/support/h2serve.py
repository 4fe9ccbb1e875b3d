"""The FakeApi's HTTP/2 side: one connection, many streams, each an Exchange answered like HTTP/1.1.

FakeApi(http2=True) offers "h2" in ALPN (TLS), takes a cleartext connection that starts
with the client preface (h2c with prior knowledge), and answers `Upgrade: h2c` with a 101
(the request becomes stream 1). Frames and HPACK are python3-h2's (Debian's), so what the
tracer decodes was written by an independent implementation.

Every stream is answered in a thread of its own, so responses of concurrent streams
interleave on the wire (an SSE reply with event_delay sends a DATA frame per event); the
connection's reader thread feeds h2 and wakes the writers waiting for flow-control window.
Each response also carries a header whose value is new every time (`x-agtap-churn`,
~150 bytes), indexed by h2's encoder: with the default 4096-byte HPACK table a
connection reused for many calls evicts entries all the time, as real APIs' request-ids do.
Reply.drop_after on a stream resets the stream (RST_STREAM, INTERNAL_ERROR) after that
many events instead of cutting the connection; Reply.close sends GOAWAY after the answer.
"""

from __future__ import annotations

import os
import select
import socket
import ssl
import threading
import time
from email.utils import formatdate
from urllib.parse import parse_qs, urlsplit

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

from . import pacing, routes
from .exchange import Exchange
from .reply import Reply

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class H2Server:
    """One HTTP/2 connection of a FakeApi (`api`): serve() returns when the client goes away."""

    def __init__(self, api, sock: socket.socket, addr: tuple, conn_no: int):
        self.api, self.sock, self.addr, self.conn_no = api, sock, addr, conn_no
        cfg = h2.config.H2Configuration(client_side=False, header_encoding="utf-8", validate_inbound_headers=False)
        self.h2 = h2.connection.H2Connection(cfg)
        self.cond = threading.Condition()
        self.requests: dict[int, Exchange] = {}
        self.reset: set[int] = set()
        self.closed = False

    # -- the connection ----------------------------------------------------------------
    def serve(self, first: bytes = b"", upgrade: tuple[Exchange, str] | None = None) -> None:
        with self.cond:
            if upgrade is not None:
                ex, settings = upgrade
                ex.http_version = "2"   # asked in HTTP/1.1, answered in HTTP/2
                self.h2.initiate_upgrade_connection(settings)
                self.requests[1] = ex
            else:
                self.h2.initiate_connection()
            self._flush()
        if upgrade is not None:
            self._answer_later(1)
        data = first
        try:
            while True:
                if data:
                    with self.cond:
                        events = self.h2.receive_data(data)
                        for event in events:
                            self._event(event)
                        self._flush()
                        self.cond.notify_all()
                data = self._recv()
                if data == b"":
                    break
        except (OSError, h2.exceptions.ProtocolError):
            pass
        finally:
            with self.cond:
                self.closed = True
                self.cond.notify_all()

    def _recv(self) -> bytes | None:
        """The next bytes (b"": the client closed; None: nothing yet). An SSL object must not
        read in one thread while another writes: the read waits for readable data outside the
        lock, then takes it under the lock the writers hold."""
        pending = getattr(self.sock, "pending", lambda: 0)()
        if not pending and not select.select([self.sock], [], [], 0.2)[0]:
            return None
        with self.cond:
            try:
                return self.sock.recv(65536)
            except ssl.SSLWantReadError:
                return None

    def _flush(self) -> None:
        out = self.h2.data_to_send()
        if out:
            self.sock.sendall(out)

    def _event(self, event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self._request(event.stream_id, event.headers)
        elif isinstance(event, h2.events.DataReceived):
            ex = self.requests.get(event.stream_id)
            if ex is not None:
                ex.body += event.data
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            self._answer_later(event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            self.reset.add(event.stream_id)

    def _request(self, stream_id: int, headers: list) -> None:
        pseudo = {k: v for k, v in headers if k.startswith(":")}
        target = pseudo.get(":path", "/")
        ex = Exchange(seq=0, conn=self.conn_no, client_port=self.addr[1], method=pseudo.get(":method", ""),
                      target=target, headers=[(k, v) for k, v in headers if not k.startswith(":")])
        ex.headers.insert(0, ("host", pseudo.get(":authority", "")))
        ex.http_version = "2"
        parts = urlsplit(target)
        ex.path, ex.query = parts.path, parse_qs(parts.query)
        ex.ns_request_start = time.monotonic_ns()
        self.requests[stream_id] = ex

    def _answer_later(self, stream_id: int) -> None:
        ex = self.requests.get(stream_id)
        if ex is None:
            return
        ex.t_request, ex.ns_request = time.time(), time.monotonic_ns()
        threading.Thread(target=self._answer, args=(stream_id, ex), daemon=True,
                         name=f"h2-{self.conn_no}-{stream_id}").start()

    # -- one stream's answer -----------------------------------------------------------
    def _answer(self, stream_id: int, ex: Exchange) -> None:
        api = self.api
        with api._lock:
            api._seq += 1
            ex.seq = api._seq
        planned, stream = routes.plan(ex, api._next_reply)
        reply = ex.reply or Reply()
        try:
            self._respond(stream_id, ex, planned, stream, reply)
        except (OSError, h2.exceptions.H2Error, _Gone) as e:
            ex.client_gone = repr(e)
            ex.t_done, ex.ns_done = time.time(), time.monotonic_ns()
        with api._lock:
            api.exchanges.append(ex)
            api._lock.notify_all()

    def _respond(self, sid: int, ex: Exchange, planned, stream: bool, reply: Reply) -> None:
        if reply.delay:
            time.sleep(reply.delay)
        streaming, use_gzip = pacing.choose(ex, planned, reply)
        headers = [("date", formatdate(usegmt=True)), ("content-type", planned.content_type)]
        headers += [(k.lower(), v) for k, v in planned.headers + list(reply.headers.items())]
        headers.append(("x-agtap-churn", os.urandom(75).hex()))
        if use_gzip:
            headers.append(("content-encoding", "gzip"))
        if not streaming:
            wire = pacing.whole_body(ex, planned, use_gzip)
            headers.append(("content-length", str(len(wire))))
        ex.response_headers = headers
        with self.cond:
            self._check(sid)
            ex.t_first_byte, ex.ns_first_byte = time.time(), time.monotonic_ns()
            self.h2.send_headers(sid, [(":status", str(planned.status))] + headers)
            self._flush()
        if not streaming:
            if reply.drop_after is not None:
                self._send(sid, wire[:len(wire) // 2], end=False)
                ex.dropped = True
                self._reset(sid)
            else:
                self._send(sid, wire, end=True)
        else:
            for batch in pacing.batches(ex, planned, reply, use_gzip):
                data = b"".join(batch.pieces)
                if data:
                    self._send(sid, data, end=False)
                ex.events.extend(batch.events)
            if ex.dropped:
                self._reset(sid)
            else:
                self._send(sid, b"", end=True)
            ex.response_body = b"".join(ex.events)
        if reply.close:
            with self.cond:
                self.h2.close_connection()
                self._flush()
        ex.t_done, ex.ns_done = time.time(), time.monotonic_ns()
        if not self.api.keep_bulk and ex.path.startswith("/bulk/"):
            ex.response_body = b""

    def _check(self, sid: int) -> None:
        if self.closed or sid in self.reset:
            raise _Gone(f"stream {sid}: the client went away")

    def _send(self, sid: int, data: bytes, end: bool) -> None:
        """DATA frames for `data`, within the peer's flow-control window and frame size."""
        view = memoryview(data)
        while True:
            with self.cond:
                while True:
                    self._check(sid)
                    window = self.h2.local_flow_control_window(sid)
                    if window > 0 or not view:
                        break
                    self.cond.wait(5)
                n = min(len(view), window, self.h2.max_outbound_frame_size)
                last = end and n == len(view)
                self.h2.send_data(sid, bytes(view[:n]), end_stream=last)
                self._flush()
            view = view[n:]
            if not view:
                return

    def _reset(self, sid: int) -> None:
        with self.cond:
            self.h2.reset_stream(sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
            self._flush()


class _Gone(Exception):
    pass
