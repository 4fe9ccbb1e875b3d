"""HTTP/2 framing and header decompression for one connection (RFC 9113, RFC 7541).

`H2Connection` takes the bytes each side wrote, in chunks of any size, and
calls its owner (the driver) back per stream: a decoded header block (request,
response or trailers), DATA payload pieces (padding removed, never buffered: a
16 MiB frame costs no more memory than the chunk carrying it), RST_STREAM,
GOAWAY, and problems. Frame headers and control frames are parsed by
`hyperframe`, header blocks by `hpack`: one HPACK decoder per direction of the
connection, as the peers keep one encoder each, sized by the SETTINGS_HEADER_TABLE_SIZE
the other side announced. PRIORITY, PING, WINDOW_UPDATE and unknown frame types
are skipped unread.

Joining late (no preface seen) or losing a header block (cut, too large,
undecodable) leaves an HPACK decoder out of step with its encoder. Nothing is
guessed: the decoder restarts empty, and since HPACK numbers dynamic entries
from the newest, every entry inserted after the restart keeps its index. An
index past the entries it holds names one inserted before the restart: it
decodes to UNKNOWN (`_LateTable`), and a block holding an UNKNOWN is reported
as `HPACK_UNKNOWN` (the exchange is dropped or ends incomplete, and counted).
Such a block is still decoded to its end, and what it inserts is inserted
(UNKNOWN where it named an unknown entry), so the decoder stays in step: the
next block that names only entries inserted since decodes. (Failing the whole
block instead would lose what it inserted, and a peer whose every block names
an entry the previous one inserted would never be decoded again.) A dynamic
table size update to 0 empties both tables: from then on the decoder is exact.

Bounds: a header block (HEADERS + CONTINUATIONs) is kept up to `max_block`
bytes, its decoded list up to `max_list` (hpack's check: the HPACK bomb), the
dynamic table up to MAX_TABLE_SIZE whatever a peer announces, a control frame
up to MAX_CONTROL_PAYLOAD; past those the frame is skipped and the problem
reported, so an endless CONTINUATION costs nothing but the bytes in flight.
"""

from __future__ import annotations

import struct

from hpack import Decoder
from hpack.exceptions import InvalidTableIndex
from hpack.table import HeaderTable
from hyperframe.exceptions import HyperframeError
from hyperframe.frame import (ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame, PushPromiseFrame,
                              RstStreamFrame, SettingsFrame)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"   # the client's first bytes (RFC 9113 §3.4)
HTTP2_SETTINGS_HEADER = "http2-settings"          # h2c upgrade: the client's SETTINGS payload, base64url

MAX_TABLE_SIZE = 64 * 1024        # HPACK dynamic table kept per direction, whatever a peer announces
MAX_CONTROL_PAYLOAD = 16 * 1024   # SETTINGS, RST_STREAM, GOAWAY payloads read up to this
MAX_FRAME_TYPE = 0x9              # the frame types of RFC 9113 (a late join checks against them)
DEFAULT_MAX_FRAME = 16 * 1024     # SETTINGS_MAX_FRAME_SIZE's initial value

HPACK_UNKNOWN = "hpack_state_unknown"   # a header block refers to entries sent before capture began

ERROR_CODES = ("NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT",
               "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR",
               "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED")

UNKNOWN = b"\x00agtap: an HPACK entry inserted before capture began"   # told apart by identity, never by value
MAX_ENTRIES = MAX_TABLE_SIZE // 32   # the most entries a table of MAX_TABLE_SIZE holds (32 bytes of overhead each)

_HEAD = struct.Struct("!HBBBL")   # frame header: length (24 bits as 16 + 8), type, flags, stream id
DATA_TYPE = DataFrame.type


def error_name(code: int) -> str:
    return ERROR_CODES[code] if 0 <= code < len(ERROR_CODES) else f"0x{code:x}"


def looks_like_frames(data: bytes) -> bool:
    """Does `data` (a client's write, no preface seen) start at an HTTP/2 frame boundary? Checks the
    frame headers that fit in it: known types, sane lengths, stream 0 exactly for connection frames."""
    pos, seen = 0, 0
    while pos + 9 <= len(data) and seen < 4:
        hi, lo, ftype, _flags, sid = _HEAD.unpack_from(data, pos)
        length = (hi << 8) | lo
        if ftype > MAX_FRAME_TYPE or sid & 0x80000000 or length > 1 << 20:
            return False
        try:
            Frame.parse_frame_header(data[pos:pos + 9])   # stream association (0 or not) per type
        except HyperframeError:
            return False
        pos += 9 + length
        seen += 1
    return seen > 0


class _LateTable(HeaderTable):
    """The dynamic table of a decoder out of step: it holds the newest part of its encoder's table,
    at the same indexes; an index past it (but within what a table may hold) names an entry inserted
    before: (UNKNOWN, UNKNOWN). Once emptied (a size update to 0, an entry larger than the table)
    it is exact again, and an index past it is the peer's error."""

    def __init__(self):
        super().__init__()
        self.partial = True   # entries older than ours may exist

    def get_by_index(self, index):
        try:
            return super().get_by_index(index)
        except InvalidTableIndex:
            if self.partial and HeaderTable.STATIC_TABLE_LENGTH < index <= HeaderTable.STATIC_TABLE_LENGTH + MAX_ENTRIES:
                return UNKNOWN, UNKNOWN
            raise

    @HeaderTable.maxsize.setter
    def maxsize(self, newmax):
        HeaderTable.maxsize.fset(self, newmax)
        if int(newmax) <= 0:
            self.partial = False

    def add(self, name, value):
        super().add(name, value)
        if not self.dynamic_entries:
            self.partial = False   # larger than the table: it emptied it


def _names_unknown(headers) -> bool:
    return any(k is UNKNOWN or v is UNKNOWN for k, v in headers)


class HeaderBlockDecoder:
    """One direction's HPACK state. `synced` while it has seen every header block since the preface."""

    __slots__ = ("synced", "max_list", "dec", "allowed")

    def __init__(self, synced: bool, max_list: int):
        self.synced = synced
        self.max_list = max_list
        self.allowed = 4096   # SETTINGS_HEADER_TABLE_SIZE's initial value
        self._restart()

    def _restart(self) -> None:
        d = Decoder(max_header_list_size=self.max_list)
        if self.synced:
            d.max_allowed_table_size = self.allowed
        else:
            # out of step: hold as much as any encoder may (bounded), so that every entry both sides
            # hold keeps its index; references past what we hold are UNKNOWN, never mis-decoded
            d.header_table = _LateTable()
            d.max_allowed_table_size = d.header_table_size = MAX_TABLE_SIZE
        self.dec = d

    def allow_table_size(self, size: int) -> None:
        """The other side announced SETTINGS_HEADER_TABLE_SIZE: our encoder's peer may grow its table to it.
        Shrinking is taken as growing would be (the encoder may still use the old size until its ACK)."""
        self.allowed = max(self.allowed, min(size, MAX_TABLE_SIZE))
        if self.synced:
            self.dec.max_allowed_table_size = self.allowed

    def lose_sync(self) -> None:
        """A header block was not decoded (cut, too large): what it inserted is unknown."""
        self.synced = False
        self._restart()

    def decode(self, block: bytes) -> tuple[list[tuple[str, str]] | None, str | None]:
        """(headers, None), or (None, the reason) and the decoder restarts out of step."""
        try:
            raw = self.dec.decode(block, raw=True)
        except InvalidTableIndex:
            reason = "parse_error: http2 hpack: invalid table index"
        except Exception as e:   # hpack's errors (bomb, bad size update, Huffman) and any other bad input
            reason = f"parse_error: http2 hpack: {type(e).__name__}"
        else:
            if not self.synced and _names_unknown(raw):
                return None, HPACK_UNKNOWN   # not guessed; the decoder stays in step (what it inserted is there)
            return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw], None
        self.lose_sync()
        return None, reason


# reader states
PREFACE_WAIT, HEAD, BUFFER, DATA_PAD, DATA, SKIP, DEAD = range(7)


class FrameReader:
    """The frames one side wrote: reassembled across chunks, handed to the H2Connection."""

    def __init__(self, conn: "H2Connection", from_client: bool, expect_preface: bool):
        self.conn = conn
        self.from_client = from_client
        self.state = PREFACE_WAIT if expect_preface else HEAD
        self.buf = b""
        self.pos = 0
        self.ts = self.wall = 0
        self.left_ts = self.left_wall = 0   # when the bytes left over from earlier chunks arrived
        self.frame: Frame | None = None
        self.length = 0
        self.frame_ts = self.frame_wall = 0
        self.parts: list[bytes] = []        # BUFFER: the payload so far
        self.need = 0                       # BUFFER/DATA/SKIP: bytes still to come
        self.pad = 0                        # DATA: padding after the data
        self.end_sid = 0                    # a DATA frame with END_STREAM: notify once its bytes are read
        self.data_wire = 0                  # a DATA frame's size on the wire, told with its first piece
        self.check_next = False             # after a cut: the next chunk must start with a frame header
        self.lost_boundary = "http2: lost frame boundary after a cut"   # the reason when it does not
        # the header block in progress (HEADERS/PUSH_PROMISE, then CONTINUATIONs)
        self.block: list[bytes] | None = None
        self.block_sid = 0
        self.block_size = 0
        self.block_wire = 0
        self.block_end_stream = False
        self.block_push = False
        self.block_over = False             # lost (too large, a bad frame): skipped to its END_HEADERS
        self.block_problem = ""
        self.block_ts = self.block_wall = 0

    # -- input -----------------------------------------------------------------
    def feed(self, data: bytes, ts: int, wall: int) -> None:
        if self.state == DEAD:
            return
        if self.check_next:
            if len(self.buf) + len(data) < 9:   # a header's first bytes: judged with the next chunk
                if not self.buf:
                    self.left_ts, self.left_wall = ts, wall
                self.buf, self.pos = self.buf + data, 0
                return
            data, self.buf, self.pos = self.buf + data, b"", 0
            self.check_next = False
            if not looks_like_frames(data):
                self._fatal(self.lost_boundary, ts)
                return
        if self.pos < len(self.buf):
            self.buf = self.buf[self.pos:] + data
        else:
            self.buf = data
            self.left_ts, self.left_wall = ts, wall
        self.pos = 0
        self.ts, self.wall = ts, wall
        steps = _STEPS
        while steps[self.state](self):
            pass
        if self.pos >= len(self.buf):
            self.buf, self.pos = b"", 0

    def cut(self, ts: int) -> None:
        """Bytes after this chunk's were not copied: the frame in progress is lost, and where the next one
        starts is known only if the next chunk begins with one (writes usually do)."""
        if self.state == DEAD:
            return
        conn = self.conn
        if self.block is not None:
            sid = self.block_sid
            conn.hpack(self.from_client).lose_sync()
            self.block = None
            conn.owner.h2_stream_lost(self.from_client, sid, "cut", ts)
        elif self.state in (DATA, DATA_PAD) or self.state == SKIP and self.end_sid:
            conn.owner.h2_stream_lost(self.from_client, self.frame.stream_id, "cut", ts)
        self.state = HEAD
        self.buf, self.pos, self.end_sid, self.data_wire = b"", 0, 0, 0
        self.check_next = True

    # -- steps: True to go on, False to wait for the next chunk ----------------------
    def _step_preface(self) -> bool:
        have = self.buf[self.pos:self.pos + len(PREFACE)]
        if not PREFACE.startswith(have):
            self._fatal("http2: bad client preface", self.ts)
            return False
        if len(have) < len(PREFACE):
            return False
        self.pos += len(PREFACE)
        self.state = HEAD
        return True

    def _step_head(self) -> bool:
        buf, pos = self.buf, self.pos
        if len(buf) - pos < 9:
            if pos and pos < len(buf):
                self.left_ts, self.left_wall = self.ts, self.wall   # the leftover came with this chunk
            return False
        try:
            frame, length = Frame.parse_frame_header(buf[pos:pos + 9])
        except HyperframeError as e:
            self._fatal(f"http2: bad frame header ({e})", self.ts)
            return False
        if pos == 0 and self.left_ts != self.ts:
            self.frame_ts, self.frame_wall = self.left_ts, self.left_wall
        else:
            self.frame_ts, self.frame_wall = self.ts, self.wall
        self.pos = pos + 9
        self.frame, self.length = frame, length
        if self.block is not None and not (isinstance(frame, ContinuationFrame)
                                           and frame.stream_id == self.block_sid):
            self._fatal("http2: header block interrupted by another frame", self.ts)
            return False
        if self.block is None and isinstance(frame, ContinuationFrame):
            self._fatal("http2: CONTINUATION outside a header block", self.ts)
            return False
        if frame.type == DATA_TYPE:   # the frame's size is told with its first piece (or its end)
            flags = frame.flags
            self.data_wire = 9 + length
            self.end_sid = frame.stream_id if "END_STREAM" in flags else 0
            self.need = length
            self.pad = 0
            if "PADDED" in flags:
                if length == 0:
                    self._fatal("http2: padded DATA frame without its pad length", self.ts)
                    return False
                self.state = DATA_PAD
            else:
                self.state = DATA
        elif isinstance(frame, (HeadersFrame, PushPromiseFrame, ContinuationFrame)):
            self._block_frame(frame, length)
        elif isinstance(frame, (SettingsFrame, RstStreamFrame, GoAwayFrame)):
            if length > MAX_CONTROL_PAYLOAD:
                self.conn.owner.h2_problem(self.from_client, f"http2: {type(frame).__name__} too large", self.ts)
                self._skip(length)
            else:
                self._buffer(length)
        else:
            self._skip(length)   # PRIORITY, PING, WINDOW_UPDATE, ALTSVC, extensions: nothing agtap needs
        return True

    def _block_frame(self, frame, length: int) -> None:
        if not isinstance(frame, ContinuationFrame):
            self.block, self.block_sid, self.block_size, self.block_wire = [], frame.stream_id, 0, 0
            self.block_end_stream = "END_STREAM" in frame.flags
            self.block_push = isinstance(frame, PushPromiseFrame)
            self.block_over = False
            self.block_ts, self.block_wall = self.frame_ts, self.frame_wall
        self.block_wire += 9 + length
        if not self.block_over and self.block_size + length > self.conn.max_block:
            self._block_lost("parse_error: http2 header block too large")
        if self.block_over:
            self._skip(length)
        else:
            self._buffer(length)

    def _block_lost(self, problem: str) -> None:
        """The header block in progress cannot be decoded: counted now, skipped to its END_HEADERS."""
        self.block_over = True
        self.block_problem = problem
        self.block = []                       # what was kept is of no use now
        self.conn.hpack(self.from_client).lose_sync()
        self.conn.owner.h2_problem(self.from_client, problem, self.ts)

    def _buffer(self, length: int) -> None:
        self.parts = []
        self.need = length
        self.state = BUFFER
        if length == 0:
            self._frame_done()

    def _skip(self, length: int) -> None:
        self.need = length
        self.state = SKIP
        if length == 0:
            self._skip_done()

    def _step_buffer(self) -> bool:
        avail = len(self.buf) - self.pos
        if avail <= 0:
            return False
        take = min(avail, self.need)
        self.parts.append(self.buf[self.pos:self.pos + take])
        self.pos += take
        self.need -= take
        if self.need == 0:
            self._frame_done()
        return True

    def _step_skip(self) -> bool:
        avail = len(self.buf) - self.pos
        if avail <= 0 and self.need:
            return False
        take = min(avail, self.need)
        self.pos += take
        self.need -= take
        if self.need == 0:
            self._skip_done()
        return True

    def _step_data_pad(self) -> bool:
        if self.pos >= len(self.buf):
            return False
        self.pad = self.buf[self.pos]
        self.pos += 1
        self.need -= 1
        if self.pad > self.need:
            self._fatal("http2: DATA padding longer than the frame", self.ts)
            return False
        self.need -= self.pad
        self.state = DATA
        return True

    def _step_data(self) -> bool:
        need = self.need
        avail = len(self.buf) - self.pos
        if avail <= 0 and need:
            return False
        if need:
            take = avail if avail < need else need
            pos = self.pos
            self.pos = pos + take
            self.need = need = need - take
            end = need == 0 and not self.pad and self.end_sid != 0   # the end comes with the last piece
            self.conn.owner.h2_data(self.from_client, self.frame.stream_id, self.buf[pos:pos + take], end,
                                    self.ts, self.data_wire)
            self.data_wire = 0
            if end:
                self.end_sid = 0
        if need == 0:
            if self.pad or self.end_sid or self.data_wire:
                self._skip(self.pad)   # padding to pass, or an empty frame still to tell
            else:
                self.state = HEAD
        return True

    def _step_dead(self) -> bool:
        self.pos = len(self.buf)
        return False

    # -- whole frames ---------------------------------------------------------------
    def _skip_done(self) -> None:
        self.state = HEAD
        frame = self.frame
        if self.end_sid or self.data_wire:   # a DATA frame's end, or an empty one's size
            end, self.end_sid, wire, self.data_wire = self.end_sid != 0, 0, self.data_wire, 0
            self.conn.owner.h2_data(self.from_client, frame.stream_id, b"", end, self.ts, wire)
        elif self.block is not None and self.block_over and "END_HEADERS" in frame.flags:
            self._block_done()

    def _frame_done(self) -> None:
        self.state = HEAD
        frame, payload = self.frame, b"".join(self.parts)
        self.parts = []
        try:
            frame.parse_body(memoryview(payload))
        except (HyperframeError, ValueError, IndexError, struct.error) as e:
            if self.block is not None:   # its fragment is lost, so is the HPACK state it carried
                self._block_lost(f"parse_error: http2 bad {type(frame).__name__} ({e})")
                if "END_HEADERS" in frame.flags:
                    self._block_done()
            else:
                self.conn.owner.h2_problem(self.from_client, f"http2: bad {type(frame).__name__} ({e})", self.ts)
            return
        if isinstance(frame, (HeadersFrame, PushPromiseFrame, ContinuationFrame)):
            self.block.append(frame.data)
            self.block_size += len(frame.data)
            if "END_HEADERS" in frame.flags:
                self._block_done()
        elif isinstance(frame, SettingsFrame):
            size = frame.settings.get(SettingsFrame.HEADER_TABLE_SIZE)
            if size is not None and "ACK" not in frame.flags:
                self.conn.table_size_announced(self.from_client, size)
        elif isinstance(frame, RstStreamFrame):
            self.conn.owner.h2_reset(self.from_client, frame.stream_id, frame.error_code, self.ts)
        elif isinstance(frame, GoAwayFrame):
            self.conn.owner.h2_goaway(self.from_client, frame.last_stream_id, frame.error_code, self.ts)

    def _block_done(self) -> None:
        parts, self.block = self.block, None
        owner = self.conn.owner
        if self.block_over:   # counted when it was lost; the call it belongs to ends with the reason
            if not self.block_push:
                owner.h2_stream_lost(self.from_client, self.block_sid, self.block_problem, self.ts)
            return
        headers, problem = self.conn.hpack(self.from_client).decode(b"".join(parts))
        if self.block_push:   # a pushed request's headers: only the HPACK state they carry matters
            if problem and problem != HPACK_UNKNOWN:
                owner.h2_problem(self.from_client, problem, self.ts)
            return
        owner.h2_headers(self.from_client, self.block_sid, headers, problem, self.block_end_stream,
                         self.block_ts, self.block_wall, self.block_wire, self.ts)

    def _fatal(self, reason: str, ts: int) -> None:
        """The byte stream no longer makes sense as frames: stop reading this direction."""
        self.state = DEAD
        self.block = None
        self.buf, self.pos = b"", 0
        self.conn.owner.h2_broken(self.from_client, reason, ts)


_STEPS = (FrameReader._step_preface, FrameReader._step_head, FrameReader._step_buffer, FrameReader._step_data_pad,
          FrameReader._step_data, FrameReader._step_skip, FrameReader._step_dead)


class H2Connection:
    """Both directions of one HTTP/2 connection. `late`: capture began after its preface."""

    def __init__(self, owner, *, late: bool = False, expect_preface: bool = True, max_block: int = 64 * 1024,
                 max_list: int = 256 * 1024):
        self.owner = owner
        self.max_block = max_block
        self.client = FrameReader(self, True, expect_preface and not late)
        self.server = FrameReader(self, False, False)
        if late:
            # the server's first chunk after a late join: at a frame boundary unless a read was in
            # flight when capture began; nothing is decoded from a direction that starts mid-frame
            self.server.check_next = True
            self.server.lost_boundary = "http2: joined late inside a frame"
        self.client_hpack = HeaderBlockDecoder(not late, max_list)   # decodes the blocks the client sent
        self.server_hpack = HeaderBlockDecoder(not late, max_list)

    def hpack(self, from_client: bool) -> HeaderBlockDecoder:
        return self.client_hpack if from_client else self.server_hpack

    def table_size_announced(self, from_client: bool, size: int) -> None:
        # SETTINGS_HEADER_TABLE_SIZE bounds the table of the decoder that sent it, i.e. the other side's encoder
        self.hpack(not from_client).allow_table_size(size)

    def client_settings(self, payload: bytes) -> None:
        """h2c upgrade: the client's SETTINGS as sent in its HTTP2-Settings header (decoded)."""
        frame = SettingsFrame(0)
        try:
            frame.parse_body(memoryview(payload))
        except (HyperframeError, ValueError, struct.error):
            return
        size = frame.settings.get(SettingsFrame.HEADER_TABLE_SIZE)
        if size is not None:
            self.table_size_announced(True, size)

    def egress(self, data: bytes, ts: int, wall: int = 0) -> None:
        self.client.feed(data, ts, wall)

    def ingress(self, data: bytes, ts: int, wall: int = 0) -> None:
        self.server.feed(data, ts, wall)
