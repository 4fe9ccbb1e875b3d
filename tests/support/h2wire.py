"""Real HTTP/2 bytes for the unit tests: python3-h2's client and server connection objects talking to
each other in memory (no sockets). What each side writes is recorded in order, as the tracer would
see it: the client's writes are egress, the server's ingress. Flow control is acknowledged as a real
peer does, so bodies of any size go through.

    pair = H2Pair()
    sid = pair.request("/v1/messages", {"model": "m", "stream": True})
    pair.respond(sid, sse_blocks(fixture("anthropic_stream_tool.sse")), content_type="text/event-stream")
    pair.feed(run)           # every write, 10 ms apart
"""

from __future__ import annotations

import json
from typing import Iterable

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, RemoteSettingsChanged
from h2.settings import SettingCodes

from agtap.capture.chunk import Direction

OUT, IN = Direction.EGRESS, Direction.INGRESS


class H2Pair:
    def __init__(self, *, client_table_size: int | None = None, server_table_size: int | None = None,
                 upgrade: bool = False):
        self.client = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
        self.server = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self.writes: list[tuple[Direction, bytes]] = []
        if upgrade:
            return   # see upgraded(): the HTTP/1.1 request goes first
        self.client.initiate_connection()
        if client_table_size is not None:   # how big the client lets the server's encoder table grow
            self.client.update_settings({SettingCodes.HEADER_TABLE_SIZE: client_table_size})
        self._flush_client()
        self.server.initiate_connection()
        if server_table_size is not None:
            self.server.update_settings({SettingCodes.HEADER_TABLE_SIZE: server_table_size})
        self._flush_server()
        self._flush_client()   # SETTINGS ACK

    # -- plumbing -------------------------------------------------------------------
    def _flush_client(self) -> None:
        data = self.client.data_to_send()
        if data:
            self.writes.append((OUT, data))
            self._react(self.server, self.server.receive_data(data))

    def _flush_server(self) -> None:
        data = self.server.data_to_send()
        if data:
            self.writes.append((IN, data))
            self._react(self.client, self.client.receive_data(data))

    def _react(self, conn: H2Connection, events) -> None:
        for ev in events:
            if isinstance(ev, DataReceived) and ev.flow_controlled_length:
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, RemoteSettingsChanged):
                pass
        # acks are sent by the side that received, as a real stack does at once
        if conn is self.server:
            self._flush_server()
        else:
            self._flush_client()

    def _send(self, conn: H2Connection, sid: int, data: bytes, end: bool) -> None:
        step = conn.max_outbound_frame_size
        for i in range(0, len(data), step):
            conn.send_data(sid, data[i:i + step], end_stream=end and i + step >= len(data))

    # -- requests and responses -------------------------------------------------------------
    def request(self, path: str, body, *, authority: str = "api.anthropic.com", method: str = "POST",
                headers: Iterable[tuple[str, str]] = (), split_body: bool = False, send: bool = True) -> int:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        sid = self.client.get_next_available_stream_id()
        hs = [(":method", method), (":scheme", "https"), (":authority", authority), (":path", path),
              ("content-type", "application/json"), ("content-length", str(len(raw))), *headers]
        self.client.send_headers(sid, hs, end_stream=not raw)
        if raw:
            if split_body:   # headers and body in two writes
                self._flush_client()
            self._send(self.client, sid, raw, True)
        if send:
            self._flush_client()
        return sid

    def respond(self, sid: int, parts: list[bytes] | bytes, *, status: int = 200,
                content_type: str = "application/json", headers: Iterable[tuple[str, str]] = (),
                end: bool = True, trailers: list[tuple[str, str]] | None = None, send: bool = True) -> None:
        """Headers, then each part in its own write (DATA frames of at most the frame size)."""
        if isinstance(parts, bytes):
            parts = [parts]
        self.server.send_headers(sid, [(":status", str(status)), ("content-type", content_type), *headers])
        if send:
            self._flush_server()
        for i, p in enumerate(parts):
            last = i == len(parts) - 1
            self._send(self.server, sid, p, end and last and trailers is None)
            if send:
                self._flush_server()
        if trailers is not None:
            self.server.send_headers(sid, trailers, end_stream=True)
        if send:
            self._flush_server()

    def reset(self, sid: int, code: int = 8, by_client: bool = True) -> None:
        if by_client:
            self.client.reset_stream(sid, code)
            self._flush_client()
        else:
            self.server.reset_stream(sid, code)
            self._flush_server()

    def flush(self) -> None:
        self._flush_client()
        self._flush_server()

    # -- feeding ------------------------------------------------------------------------
    def egress_bytes(self) -> bytes:
        return b"".join(d for direction, d in self.writes if direction == OUT)

    def ingress_bytes(self) -> bytes:
        return b"".join(d for direction, d in self.writes if direction == IN)

    def feed(self, run, t0: float = 0.0, step: float = 10.0, conn: str | None = None, start: int = 0) -> float:
        """Every write from index `start` to `run`, `step` ms apart; returns the time after the last."""
        t = t0
        for direction, data in self.writes[start:]:
            run.chunk(direction, data, t, conn=conn)
            t += step
        return t


# -- hostile peers: the shapes the decoder must survive with bounded memory (unit tests, fuzz seeds) --
def _frame(frame) -> bytes:
    return frame.serialize()


def _llm_headers(enc, sid: int, end_stream: bool = True, end_headers: bool = True) -> bytes:
    from hyperframe.frame import HeadersFrame
    block = enc.encode([(":method", "POST"), (":scheme", "https"), (":authority", "api.anthropic.com"),
                        (":path", "/v1/messages"), ("content-type", "application/json")])
    flags = (["END_STREAM"] if end_stream else []) + (["END_HEADERS"] if end_headers else [])
    return _frame(HeadersFrame(sid, block, flags=flags))


def client_hello() -> bytes:
    from hyperframe.frame import SettingsFrame
    from agtap.wire.http2 import PREFACE
    return PREFACE + _frame(SettingsFrame(0))


def hostile_shapes(scale: int = 1) -> dict[str, list[tuple[bool, bytes]]]:
    """name -> (egress?, bytes) writes. `scale` 1 for the fuzz seeds (small), larger for the unit tests."""
    from hpack import Encoder
    from hyperframe.frame import ContinuationFrame, DataFrame, HeadersFrame
    shapes: dict[str, list[tuple[bool, bytes]]] = {}
    enc = Encoder()
    # a DATA frame whose length says 16 MiB - 1 on an LLM stream, then only part of it
    huge = _llm_headers(enc, 1, end_stream=False)
    huge += b"\xff\xff\xff\x00\x00\x00\x00\x00\x01" + b"{" * (4096 * scale)
    shapes["huge_frame_length"] = [(True, client_hello() + huge)]
    # a HEADERS frame of 16 MiB - 1 (a header block nobody should buffer), then bytes of it
    shapes["huge_header_frame"] = [(True, client_hello() + b"\xff\xff\xff\x01\x04\x00\x00\x00\x01"
                                    + b"\x00" * (8192 * scale))]
    # HPACK bomb: one 4000-byte entry inserted, then named by a one-byte index again and again
    enc = Encoder()
    bomb = enc.encode([(":method", "POST"), (":path", "/v1/messages"), (":authority", "a")]
                      + [("x-bomb", "a" * 4000)] * (200 * scale))
    shapes["hpack_bomb"] = [(True, client_hello() + _frame(HeadersFrame(1, bomb, flags=["END_HEADERS", "END_STREAM"])))]
    # a header block that never ends: CONTINUATION after CONTINUATION, none with END_HEADERS
    enc = Encoder()
    endless = [(True, client_hello() + _llm_headers(enc, 1, end_headers=False))]
    piece = _frame(ContinuationFrame(1, b"\x00" * 1024))
    for _ in range(10 * scale):   # 80 KiB a scale: past the 64 KiB a header block may have
        endless.append((True, piece * 8))
    shapes["endless_continuation"] = endless
    # streams opened and never answered, and as many asked and answered
    enc, sent = Encoder(), [client_hello()]
    n = 300 * scale
    sent += [_llm_headers(enc, 2 * i + 1) for i in range(n)]
    shapes["many_open_streams"] = [(True, b"".join(sent))]
    enc, renc = Encoder(), Encoder()
    convo: list[tuple[bool, bytes]] = [(True, client_hello())]
    for i in range(n):
        sid = 2 * i + 1
        convo.append((True, _llm_headers(enc, sid)))
        convo.append((False, _frame(HeadersFrame(sid, renc.encode([(":status", "200"),
                                                                   ("content-type", "application/json")]),
                                                 flags=["END_HEADERS"]))
                      + _frame(DataFrame(sid, b'{"type":"message","usage":{"input_tokens":1}}',
                                         flags=["END_STREAM"]))))
    shapes["many_streams"] = convo
    return shapes


def real_conversation() -> list[tuple[bool, bytes]]:
    """A streamed Anthropic call over HTTP/2 from h2's own client and server, as (egress?, bytes) writes."""
    from tests.support.harness import fixture, sse_blocks
    pair = H2Pair()
    sid = pair.request("/v1/messages", {"model": "claude-sonnet-4-5", "stream": True, "max_tokens": 64,
                                        "messages": [{"role": "user", "content": "hi"}]})
    pair.respond(sid, sse_blocks(fixture("anthropic_stream_tool.sse")), content_type="text/event-stream")
    sid = pair.request("/v1/messages", {"model": "claude-sonnet-4-5", "max_tokens": 64})
    pair.respond(sid, fixture("anthropic_message_tool.json"))
    return [(d == OUT, data) for d, data in pair.writes]
