"""Content-Encoding undone incrementally, with a cap; also through the pipeline (gzip SSE)."""

from __future__ import annotations

import gzip
import zlib

import brotli
import zstandard

from agtap.wire.encoding import BodyDecoder, decode_all
from tests.support.harness import Run, chunk_frame, end_chunked, fixture, request, response, response_head

TEXT = b"".join(b"line %d of some json-ish text {\"k\": \"v\"}\n" % i for i in range(3000))


def pieces(data: bytes, size: int):
    return [data[i:i + size] for i in range(0, len(data), size)]


def run_decoder(enc: str, data: bytes, size: int = 333, cap: int = 1 << 26) -> tuple[bytes, BodyDecoder]:
    d = BodyDecoder(enc, cap)
    out = b"".join(d.feed(p) for p in pieces(data, size)) + d.flush()
    return out, d


def test_each_encoding_incrementally():
    deflate_raw = zlib.compressobj(6, zlib.DEFLATED, -15)
    cases = {
        "gzip": gzip.compress(TEXT),
        "deflate": zlib.compress(TEXT),
        "br": brotli.compress(TEXT),
        "zstd": zstandard.ZstdCompressor().compress(TEXT),
    }
    for enc, comp in cases.items():
        out, d = run_decoder(enc, comp)
        assert out == TEXT and d.error is None and not d.capped, enc
    raw = deflate_raw.compress(TEXT) + deflate_raw.flush()
    out, _ = run_decoder("deflate", raw)   # raw deflate sent as "deflate" (common in practice)
    assert out == TEXT


def test_zstd_streamed_frame_without_content_size():
    comp = zstandard.ZstdCompressor().compressobj()
    data = comp.compress(TEXT) + comp.flush()
    assert run_decoder("zstd", data, 100)[0] == TEXT


def test_stacked_encodings_and_identity():
    data = brotli.compress(gzip.compress(TEXT))  # applied gzip first, then br
    assert decode_all("gzip, br", data) == (TEXT, None)
    assert decode_all("identity", b"abc") == (b"abc", None)


def test_cap_stops_a_bomb():
    bomb_plain = b"\0" * (20 * 1024 * 1024)
    for enc, comp in (("gzip", gzip.compress(bomb_plain)), ("br", brotli.compress(bomb_plain)),
                      ("zstd", zstandard.ZstdCompressor().compress(bomb_plain))):
        out, d = run_decoder(enc, comp, 4096, cap=1 << 20)
        assert d.capped and len(out) == 1 << 20, enc


def test_corrupt_and_unknown():
    out, problem = decode_all("gzip", b"not gzip at all")
    assert problem.startswith("decode_error")
    assert decode_all("compress", b"x")[1].startswith("decode_error: unsupported")


def test_gzip_compressed_sse_stream_through_pipeline():
    r = Run()
    r.out(request("/v1/messages", {"model": "claude-sonnet-4-5", "stream": True, "messages": []}), 0)
    sse = fixture("anthropic_stream_tool.sse")
    gz = zlib.compressobj(6, zlib.DEFLATED, 31)
    r.inn(response_head(200, {"Content-Type": "text/event-stream", "Content-Encoding": "gzip",
                              "Transfer-Encoding": "chunked"}), 50)
    # compress event by event with a sync flush, as a streaming gzip server does
    blocks = sse.split(b"\n\n")
    for i, block in enumerate(blocks):
        r.inn(chunk_frame(gz.compress(block + b"\n\n") + gz.flush(zlib.Z_SYNC_FLUSH)), 100 + 10 * i)
    r.inn(chunk_frame(gz.flush()), 300)
    end_chunked(r, 301)
    c = r.one()
    assert c.tools == ["get_weather"] and (c.input_tokens, c.output_tokens) == (472, 89)
    assert c.ttft_ms == 140.0          # the first delta's own chunk, through the decompressor
    assert c.bodies.response_body.startswith(b": source") and not c.incomplete


def test_brotli_and_zstd_json_bodies_through_pipeline():
    for enc, comp in (("br", brotli.compress), ("zstd", zstandard.ZstdCompressor().compress)):
        r = Run()
        r.out(request("/v1/chat/completions", {"model": "gpt-4o"}, host="api.openai.com"), 0)
        r.inn(response(comp(fixture("openai_chat_tool.json")), headers={"Content-Encoding": enc}), 5)
        c = r.one()
        assert c.tools == ["get_current_weather"] and c.input_tokens == 82, enc


def test_decompression_cap_marks_call_incomplete():
    from agtap.pipeline import Limits
    r = Run(limits=Limits(decompress_cap=1000))
    r.out(request("/v1/chat/completions", {"model": "gpt-4o"}, host="api.openai.com"), 0)
    r.inn(response(gzip.compress(b" " * 5000 + b"{}"), headers={"Content-Encoding": "gzip"}), 5)
    c = r.one(clean=False)
    assert c.incomplete and c.incomplete_reason == "decompression_cap"
    assert r.p.stats.decompression_capped == 1 and len(c.bodies.response_body) == 1000
