"""Content-Encoding, undone incrementally and with a cap on the output.

A streaming response (SSE over gzip happens) is decoded piece by piece as it
arrives, so events are seen when their bytes are. Past `cap` decompressed bytes
the decoder stops and says so (`capped`): a zip bomb costs at most the cap.
"""

from __future__ import annotations

import zlib

DEFAULT_DECOMPRESS_CAP = 64 * 1024 * 1024

try:  # Debian: python3-brotli
    import brotli
except ImportError:  # pragma: no cover - the package is a dependency
    brotli = None
try:  # Debian: python3-zstandard
    import zstandard
except ImportError:  # pragma: no cover
    zstandard = None


class DecodeError(Exception):
    pass


class _CapReached(Exception):
    pass


class _Zlib:
    def __init__(self, wbits: int):
        self.wbits = wbits
        self.d = zlib.decompressobj(wbits)
        self.started = False
        self.head = b""      # input kept until the 2-byte zlib header can be judged

    def feed(self, data: bytes, room: int) -> bytes:
        if not self.started:
            # "deflate" is meant to be zlib-wrapped, but raw deflate is common: decide
            # on the first 2 bytes, however the body was cut
            self.head += data
            if len(self.head) < 2:
                return b""
            data, self.head = self.head, b""
            try:
                out = self.d.decompress(data, room + 1)
            except zlib.error as e:
                if self.wbits != zlib.MAX_WBITS:
                    raise DecodeError(f"{e}") from None
                self.wbits = -zlib.MAX_WBITS
                self.d = zlib.decompressobj(self.wbits)
                try:
                    out = self.d.decompress(data, room + 1)
                except zlib.error as e2:
                    raise DecodeError(f"{e2}") from None
            self.started = True
            return out
        try:
            return self.d.decompress(data, room + 1)
        except zlib.error as e:
            raise DecodeError(f"{e}") from None

    def flush(self) -> bytes:
        try:
            if self.head:     # a body shorter than a zlib header
                self.started = True
                return self.d.decompress(self.head)
            return self.d.flush()
        except zlib.error as e:  # pragma: no cover - flush rarely fails
            raise DecodeError(str(e)) from None


class _Brotli:
    # brotli 1.0.9's process() has no output limit, and one input byte can expand
    # to a whole meta-block (up to 16 MiB). So input goes in slices small enough
    # that even a worst-case slice cannot overshoot the room left by more than
    # one meta-block: memory stays within cap + 16 MiB for any bomb. Feeding 4
    # bytes at a time costs ~2 ms per 40 KB of br (measured), and SDKs ask gzip.
    SLICE = 4096
    MAX_EXPANSION_PER_BYTE = 16 << 20

    def __init__(self):
        self.d = brotli.Decompressor()

    def feed(self, data: bytes, room: int) -> bytes:
        out = []
        n = 0
        i = 0
        try:
            while i < len(data):
                step = max(1, min(self.SLICE, (room - n) // self.MAX_EXPANSION_PER_BYTE))
                piece = self.d.process(data[i:i + step])
                i += step
                out.append(piece)
                n += len(piece)
                if n > room:
                    break
        except brotli.error as e:
            raise DecodeError(f"brotli: {e}") from None
        return b"".join(out)

    def flush(self) -> bytes:
        return b""


class _Zstd:
    # stream_writer pushes output to us in write_size pieces; raising once the
    # cap is passed keeps memory at cap + one piece even for a bomb.
    class _Sink:
        def __init__(self):
            self.parts: list[bytes] = []
            self.n = 0
            self.room = 0

        def write(self, b):
            self.parts.append(bytes(b))
            self.n += len(b)
            if self.n > self.room:
                raise _CapReached()
            return len(b)

    def __init__(self):
        self.sink = self._Sink()
        self.w = zstandard.ZstdDecompressor().stream_writer(self.sink, write_size=65536)

    def feed(self, data: bytes, room: int) -> bytes:
        s = self.sink
        s.parts, s.n, s.room = [], 0, room
        try:
            self.w.write(data)
        except _CapReached:
            pass
        except zstandard.ZstdError as e:
            raise DecodeError(f"zstd: {e}") from None
        return b"".join(s.parts)

    def flush(self) -> bytes:
        return b""


def _make(name: str):
    if name == "gzip" or name == "x-gzip":
        return _Zlib(32 + zlib.MAX_WBITS)  # 32: gzip or zlib header, auto-detected
    if name == "deflate":
        return _Zlib(zlib.MAX_WBITS)
    if name == "br":
        if brotli is None:
            raise DecodeError("br: brotli module missing")
        return _Brotli()
    if name == "zstd":
        if zstandard is None:
            raise DecodeError("zstd: zstandard module missing")
        return _Zstd()
    raise DecodeError(f"unsupported content-encoding {name!r}")


class BodyDecoder:
    """Undo a Content-Encoding header value ("gzip", "br", "gzip, br", "identity").

    feed() returns the decoded bytes available so far; after an error or once
    `cap` is reached it returns b"" and `error` / `capped` say why.
    """

    __slots__ = ("stages", "cap", "produced", "capped", "error")

    def __init__(self, content_encoding: str | None, cap: int = DEFAULT_DECOMPRESS_CAP):
        self.cap = cap
        self.produced = 0
        self.capped = False
        self.error: str | None = None
        names = [n.strip().lower() for n in (content_encoding or "").split(",")]
        names = [n for n in names if n and n != "identity"]
        try:
            # Codings are listed in the order applied, so undo them last first.
            self.stages = [_make(n) for n in reversed(names)]
        except DecodeError as e:
            self.stages = []
            self.error = str(e)

    @property
    def identity(self) -> bool:
        return not self.stages and self.error is None

    def feed(self, data: bytes) -> bytes:
        if not self.stages:
            return b"" if self.error else data
        if self.capped or self.error:
            return b""
        try:
            for st in self.stages:
                if not data:
                    break
                data = st.feed(data, self.cap - self.produced)
        except DecodeError as e:
            self.error = str(e)
            return b""
        return self._account(data)

    def flush(self) -> bytes:
        if not self.stages or self.capped or self.error:
            return b""
        out = b""
        try:
            for st in self.stages:
                out = (st.feed(out, self.cap - self.produced) if out else b"") + st.flush()
        except DecodeError as e:
            self.error = str(e)
            return b""
        return self._account(out)

    def _account(self, data: bytes) -> bytes:
        room = self.cap - self.produced
        if len(data) > room:
            data = data[:room]
            self.capped = True
        self.produced += len(data)
        return data


def decode_all(content_encoding: str | None, data: bytes, cap: int = DEFAULT_DECOMPRESS_CAP) -> tuple[bytes, str | None]:
    """Decode a whole body at once. Returns (decoded, problem or None)."""
    d = BodyDecoder(content_encoding, cap)
    if d.identity:
        return data, None
    out = d.feed(data) + d.flush()
    if d.error:
        return out, f"decode_error: {d.error}"
    if d.capped:
        return out, "decompression_cap"
    return out, None
