"""The long fuzz run: mutated provider exchanges and raw bytes through the wire parsers and the pipeline.

    .venv/bin/python -m fuzz.run                       # 1,000,000 inputs, atheris if installed
    .venv/bin/python -m fuzz.run --inputs 20000 --engine random
    make fuzz                                          # the same as the first line

Every input is a byte string that steers one of these targets (its first byte picks which):

  pipeline   a real exchange (fuzz/seeds.py) mutated (flips, cuts, inserts of framing tokens,
             duplications), split into writes at fuzz-chosen points, fed through a fresh
             Pipeline, closed/expired/flushed; and fed again, on one of 3000 connection ids,
             into one long-lived Pipeline (max_conns=1000) that is never reset
  raw        a valid request head, then the fuzz bytes as the response (or as the request)
  wire       SseDecoder, LineDecoder, JsonArrayStream, HttpParser, H2Connection and EventStreamDecoder fed the bytes
             in pieces
  encoding   BodyDecoder (gzip, deflate, br, zstd, stacked) over raw or mutated-compressed bytes

Checked on every input (a violation is a failure, like an exception): nothing escapes feed,
no `internal_errors` / `emit_errors` (the safety net in Pipeline.feed hides bugs, so it counts
as a failure here), no connection left open after flush,
every Call serialises to a JSONL line, an incomplete call has a reason, decoded output never
exceeds its cap. RSS is sampled every 10,000 inputs; after the first 10% of the run (warm-up:
caches, interned strings) it must not grow by more than 64 MiB.

atheris (coverage-guided, libFuzzer) is used when it imports, else a seeded random loop over
the same targets. Results go to fuzz/results/last-run.json; failing inputs to fuzz/crashes/.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

try:
    import atheris
except ImportError:  # the random engine needs nothing else
    atheris = None


def _import_targets(expose: bool = True):
    global Chunk, ConnClosed, ConnId, Direction, Transport, Limits, Pipeline, PriceTable, event_line
    global SseDecoder, LineDecoder, JsonArrayStream, HttpParser, BodyDecoder, SEEDS, PROVIDERS, PLATFORMS
    global H2Connection, MAX_TABLE_SIZE, EventStreamDecoder
    from agtap.call import PROVIDERS
    from agtap.providers.platforms import NAMES as PLATFORMS
    from agtap.capture.chunk import Chunk, ConnClosed, Direction, Transport
    from agtap.capture.connid import ConnId
    from agtap.pipeline import Limits, Pipeline
    from agtap.providers.pricing import PriceTable
    from agtap.sinks.jsonl import event_line
    from agtap.wire.encoding import BodyDecoder
    from agtap.wire.eventstream import EventStreamDecoder
    from agtap.wire.http1 import HttpParser
    from agtap.wire.http2 import MAX_TABLE_SIZE, H2Connection
    from agtap.wire.jsonarray import JsonArrayStream
    from agtap.wire.ndjson import LineDecoder
    from agtap.wire.sse import SseDecoder
    from fuzz.seeds import hostile, seeds
    SEEDS = seeds() + hostile()
    if expose and not getattr(Pipeline, "_fuzz_exposed", False):
        _expose_internal_errors(Pipeline)
        Pipeline._fuzz_exposed = True


LAST_INTERNAL: list[str] = [""]


def _expose_internal_errors(pipeline_cls) -> None:
    """Pipeline.feed turns a bug below into a counter; keep the exception it caught, for the report."""
    orig = pipeline_cls._abort

    def _abort(self, conn_id, reason, ts):
        et, ev, tb = sys.exc_info()
        if et is not None:
            import traceback
            frames = [f for f in traceback.extract_tb(tb) if "/agtap/" in f.filename]
            where = f"{frames[-1].filename.split('/agtap/')[-1]}:{frames[-1].lineno}" if frames else "?"
            LAST_INTERNAL[0] = f"{et.__name__}: {ev} at agtap/{where}"
        return orig(self, conn_id, reason, ts)
    pipeline_cls._abort = _abort


TOKENS = [b"\r\n", b"\r\n\r\n", b"\n\n", b"0\r\n\r\n", b"ffffffff\r\n", b"data: ", b"event: ", b"{", b"}", b"[",
          b"]", b'"', b"\\", b"\xff\xfe", b"\x00", b"\xc3", b"99999999999999999999", b"-1", b"1e999", b"null",
          b"Transfer-Encoding: chunked\r\n", b"Content-Encoding: gzip\r\n", b"Content-Encoding: br\r\n",
          b"Content-Length: 0\r\n", b"Content-Length: 99999999999\r\n", b"HTTP/1.1 200 OK\r\n",
          b"POST /v1/messages HTTP/1.1\r\n", b'"jsonrpc":"2.0"', b'"stream":true', b'"usage":{}',
          b"\x1b[2J", b"../../etc/passwd",
          # HTTP/2: the preface, frame headers (CONTINUATION, 16 MiB DATA, padded HEADERS, RST_STREAM), HPACK
          # (a table size update to 1 MiB, an index past any table)
          b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"\x00\x04\x00\x09\x00\x00\x00\x00\x01",
          b"\xff\xff\xff\x00\x00\x00\x00\x00\x01", b"\x00\x00\x05\x01\x0c\x00\x00\x00\x01\xff",
          b"\x00\x00\x04\x03\x00\x00\x00\x00\x01\x00\x00\x00\x08", b"\x3f\xe1\xff\x3f", b"\xff\xff\x7f"]
ENCODINGS = ["gzip", "deflate", "br", "zstd", "gzip, br", "x-gzip", "identity", "bogus", "gzip, gzip"]


class Reader:
    """Turns a byte string into choices; reads past the end give zeros (so any input is valid)."""

    __slots__ = ("d", "i")

    def __init__(self, data: bytes):
        self.d, self.i = data, 0

    def byte(self) -> int:
        if self.i >= len(self.d):
            return 0
        self.i += 1
        return self.d[self.i - 1]

    def int(self, lo: int, hi: int) -> int:
        span = hi - lo + 1
        v = self.byte() | (self.byte() << 8) | (self.byte() << 16) if span > 255 else self.byte()
        return lo + v % span

    def take(self, n: int) -> bytes:
        out = self.d[self.i:self.i + n]
        self.i += len(out)
        return out

    def rest(self) -> bytes:
        out = self.d[self.i:]
        self.i = len(self.d)
        return out


class _NullH2Owner:
    """What H2Connection reports goes nowhere: the wire target checks only its bounds."""

    def __getattr__(self, name):
        return lambda *args: None


class Failure(Exception):
    pass


def check(cond: bool, what: str) -> None:
    if not cond:
        raise Failure(what)


def mutate(r: Reader, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(r.int(0, 6)):
        if not b:
            break
        i = r.int(0, len(b) - 1)
        op = r.int(0, 6)
        if op == 0:
            b[i] = r.byte()
        elif op == 1:
            del b[i:i + r.int(1, 256)]
        elif op == 2:
            b[i:i] = r.take(r.int(1, 48))
        elif op == 3:
            b[i:i] = b[i:i + r.int(1, 512)]
        elif op == 4:
            b[i:i] = TOKENS[r.int(0, len(TOKENS) - 1)]
        elif op == 5:
            del b[i:]
        else:
            b[i:i + 1] = bytes([b[i] ^ (1 << r.int(0, 7))])
    return bytes(b)


def split(r: Reader, data: bytes) -> list[bytes]:
    n = r.int(0, 5)
    cuts = sorted({r.int(0, len(data)) for _ in range(n)} | {len(data)}) if data else []
    out, prev = [], 0
    for c in cuts:
        if c > prev:
            out.append(data[prev:c])
        prev = c
    return out


class Harness:
    def __init__(self):
        self.prices = PriceTable(override=None)
        self.limits = Limits(max_body=64 * 1024, decompress_cap=256 * 1024)
        self.long_emitted = 0
        self.long_internal = 0   # internal errors already reported (a failure is reported once)
        self.long = Pipeline(self._long_emit, ignore_conn=lambda c: None, prices=self.prices,
                             limits=Limits(max_body=64 * 1024, decompress_cap=256 * 1024, max_conns=1000,
                                           idle_timeout_ns=5 * 10**9))
        self.t = 10**12
        self.n = 0
        self.by_target = {"pipeline": 0, "raw": 0, "wire": 0, "encoding": 0}
        self.calls = 0

    def _long_emit(self, call) -> None:
        self.long_emitted += 1
        event_line(call)

    # -- targets -----------------------------------------------------------------
    def one(self, data: bytes) -> None:
        self.n += 1
        r = Reader(data)
        sel = r.byte() % 10
        if sel < 5:
            self.by_target["pipeline"] += 1
            seed = SEEDS[r.int(0, len(SEEDS) - 1)]
            items = []
            for egress, part in seed:
                for piece in split(r, mutate(r, part)):
                    items.append((egress, piece, r.int(0, 15) == 0))
            self._pipeline(r, items)
        elif sel < 7:
            self.by_target["raw"] += 1
            seed = SEEDS[r.int(0, len(SEEDS) - 1)]
            as_response = r.byte() & 1
            rest = r.rest()
            items = [(True, seed[0][1], False)] if as_response else []
            pieces = [rest[i:i + 700] for i in range(0, len(rest), 700)] or [b""]
            items += [(not as_response, p, False) for p in pieces]
            self._pipeline(Reader(b""), items)
        elif sel < 9:
            self.by_target["wire"] += 1
            self._wire(r)
        else:
            self.by_target["encoding"] += 1
            self._encoding(r)

    def _pipeline(self, r: Reader, items) -> None:
        emitted = []
        p = Pipeline(emitted.append, ignore_conn=lambda c: None, limits=self.limits, prices=self.prices)
        conn = (ConnId.tls(1, 0xA), ConnId.ipc_channel(77), ConnId.sock(1, 3))[r.int(0, 2)]
        close = (None, "closed", "process_exit", "evicted")[r.int(0, 3)]
        long_conn = ConnId(conn.kind, self.n % 3000, 1)
        t0 = self.t
        for egress, data, cut in items:
            self.t += 1_000_000
            ch = Chunk(conn=conn, direction=Direction.EGRESS if egress else Direction.INGRESS, ts_ns=self.t,
                       wall_ns=1_795_000_000_000_000_000 + self.t, pid=1, tid=1, comm="fz", proc="fz", data=data,
                       transport=Transport.TLS, cut=cut)
            p.feed(ch)
            ch.conn = long_conn
            self.long.feed(ch)
        if close:
            p.feed(ConnClosed(conn, self.t + 1, close))
            if self.n % 3:
                self.long.feed(ConnClosed(long_conn, self.t + 1, close))
        p.expire(self.t + 10**15)
        p.flush()
        st = p.stats
        check(st.internal_errors == 0, f"internal_errors ({LAST_INTERNAL[0]})")
        check(st.emit_errors == 0, "emit_errors")
        check(st.conns_open == 0 and not p.conns and not p.mcp_sessions, "state left after flush")
        for c in emitted:
            check(c.provider in PROVIDERS and c.platform in PLATFORMS, f"provider {c.provider!r} platform {c.platform!r}")
            check(not c.incomplete or bool(c.incomplete_reason), "incomplete without a reason")
            check(c.start_ns >= t0 or c.start_ns == 0, "start before the input")
            line = event_line(c)
            check(line.endswith(b"\n") and line.count(b"\n") == 1, "event line not one line")
            json.loads(line)
        self.calls += len(emitted)
        ls = self.long.stats
        check(ls.internal_errors == self.long_internal and ls.emit_errors == 0,
              f"long-lived pipeline: internal errors ({LAST_INTERNAL[0]})")
        check(len(self.long.conns) <= 1000, f"long-lived pipeline holds {len(self.long.conns)} conns")
        check(len(self.long.mcp_sessions) <= 1024, "long-lived pipeline: mcp sessions unbounded")
        if self.n % 1000 == 0:
            self.long.expire(self.t)

    def _wire(self, r: Reader) -> None:
        which = r.int(0, 5)
        data = r.rest()
        step = 1 if len(data) < 64 else 512
        pieces = [data[i:i + step] for i in range(0, len(data), step)]
        if which == 0:
            d = SseDecoder(max_event=4096)
            for k, p in enumerate(pieces):
                for ev in d.feed(p, k):
                    check(len(ev.data) <= 4096 + 8, "sse event past its cap")
            d.finish(len(pieces))
            check(len(d.buf) <= 4096 + 8, "sse buffer past its cap")
        elif which == 1:
            d = LineDecoder(max_line=4096)
            for k, p in enumerate(pieces):
                for line, _a, _b in d.feed(p, k):
                    check(len(line) <= 4096, "ndjson line past its cap")
            check(len(d.buf) <= 4096, "ndjson buffer past its cap")
        elif which == 2:
            d = JsonArrayStream(max_element=4096)
            for p in pieces:
                d.feed(p)
            d.finish()
        elif which == 4:
            conn = H2Connection(_NullH2Owner(), late=bool(data[:1] and data[0] & 1), max_block=4096,
                                max_list=16384)
            for k, p in enumerate(pieces):
                (conn.egress if k % 3 else conn.ingress)(p, k)
                for rd in (conn.client, conn.server):
                    kept = len(rd.buf) - rd.pos + sum(map(len, rd.parts)) + sum(map(len, rd.block or ()))
                    check(kept <= 4096 + 16384 + 512, f"http2 reader keeps {kept} bytes")
                for hp in (conn.client_hpack, conn.server_hpack):
                    check(hp.dec.header_table_size <= MAX_TABLE_SIZE, "hpack table past its cap")
        elif which == 5:
            if data[:1] == b"\x00":   # a real event stream, mutated: valid framing, broken messages
                from fuzz.seeds import bedrock_stream
                data = mutate(Reader(data[1:]), bedrock_stream())
                pieces = [data[i:i + 64] for i in range(0, len(data), 64)]
            d = EventStreamDecoder(max_message=4096)
            for k, p in enumerate(pieces):
                for m in d.feed(p, k):
                    check(len(m.payload) <= 4096, "event stream message past its cap")
                check(len(d._buf) <= 4096, f"event stream decoder buffers {len(d._buf)} bytes")
            d.finish()
        else:
            got = []
            hp = HttpParser(bool(data[:1] and data[0] & 1), got.append, lambda h, b, t: None,
                            lambda h, t: None, lambda reason, t: None, max_head=4096)
            for k, p in enumerate(pieces):
                hp.feed(p, k)
                check(len(hp.buf) <= 4096 + 8192 + 1024, f"http parser buffers {len(hp.buf)} bytes")
            hp.close(len(pieces))

    def _encoding(self, r: Reader) -> None:
        enc = ENCODINGS[r.int(0, len(ENCODINGS) - 1)]
        mode = r.int(0, 2)
        data = r.rest()
        if mode == 1:   # a real compressed body, mutated: decoders see valid headers, broken streams
            import gzip
            import zlib
            raw = SEEDS[len(data) % len(SEEDS)][-1][1] * 8
            comp = {"gzip": gzip.compress, "x-gzip": gzip.compress}.get(enc, zlib.compress)(raw)
            data = mutate(Reader(data), comp)
        elif mode == 2:  # a small bomb: 1 MiB of zeros
            import gzip
            data = gzip.compress(b"\0" * (1 << 20), 1)
            enc = "gzip"
        cap = 64 * 1024
        d = BodyDecoder(enc, cap)
        out = 0
        for i in range(0, len(data), 1000):
            out += len(d.feed(data[i:i + 1000]))
        out += len(d.flush())
        check(out <= cap, f"decoded {out} past the cap {cap}")
        if mode == 2:
            check(d.capped and out == cap, "bomb not stopped at the cap")


def _version(dist: str) -> str:
    try:
        from importlib.metadata import version
        return version(dist)
    except Exception:
        return "?"


def _code_version() -> str:
    """The commit fuzzed, and whether agtap/ differed from it (the run imports agtap once, at start)."""
    import subprocess
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "agtap"], cwd=REPO, capture_output=True,
                               text=True, timeout=10).stdout.strip()
        return head + (" + uncommitted agtap/ changes" if dirty else "")
    except Exception:
        return "?"


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


class Run:
    def __init__(self, target: int, engine: str, out: Path):
        self.target, self.engine, self.out = target, engine, out
        self.h = Harness()
        self.start = time.monotonic()
        self.samples: list[tuple[int, int]] = []   # (inputs, RSS KiB)
        self.failures: list[dict] = []     # one per distinct failure, with its first input
        self.signatures: dict[str, int] = {}
        self.failed_inputs = 0
        self.done = False
        self.code = _code_version()

    def sample(self) -> None:
        self.samples.append((self.h.n, rss_kib()))

    def test_one(self, data: bytes) -> None:
        try:
            self.h.one(data)
        except Exception as e:
            self._failed(data, e)
        if self.h.n % 10_000 == 0:
            self.sample()
            if self.h.n % 100_000 == 0:
                el = time.monotonic() - self.start
                print(f"fuzz: {self.h.n:,} inputs, {el:.0f} s, {self.h.n / el:,.0f}/s, RSS "
                      f"{self.samples[-1][1] / 1024:.1f} MiB, failures {len(self.failures)}", flush=True)
                self.write(final=False)
        if self.h.n >= self.target:
            self.write(final=True)
            os._exit(0 if self.ok() else 1)

    def _failed(self, data: bytes, e: Exception) -> None:
        """Count it and keep the first inputs of each kind; the run goes on (a known bug must not hide others)."""
        import traceback
        self.h.long_internal = self.h.long.stats.internal_errors
        self.failed_inputs += 1
        sig = f"{type(e).__name__}: {e}"
        if sig not in self.signatures:
            self.signatures[sig] = 0
            sha = hashlib.sha1(data).hexdigest()[:16]
            crashes = HERE / "crashes"
            crashes.mkdir(exist_ok=True)
            (crashes / f"{sha}.bin").write_bytes(data)
            self.failures.append({"input": f"fuzz/crashes/{sha}.bin", "error": sig,
                                  "where": traceback.format_exception(e)[-2].strip()[:300]})
            print(f"fuzz: FAILURE {sig} (input fuzz/crashes/{sha}.bin)", flush=True)
        self.signatures[sig] += 1
        if len(self.signatures) >= 50:
            self.write(final=True)
            os._exit(1)

    def growth_kib(self) -> int:
        warm = [s for s in self.samples if s[0] >= self.target // 10]
        if len(warm) < 2:
            return 0
        return max(s[1] for s in warm) - warm[0][1]

    def ok(self) -> bool:
        return not self.failures and self.growth_kib() <= 64 * 1024

    def write(self, final: bool) -> None:
        el = time.monotonic() - self.start
        res = {
            "engine": self.engine + (f" {_version('atheris')}" if self.engine == "atheris" else ""),
            "python": sys.version.split()[0],
            "code": self.code,
            "inputs": self.h.n,
            "target_inputs": self.target,
            "by_target": self.h.by_target,
            "calls_emitted": self.h.calls,
            "long_lived_pipeline": {"calls": self.h.long_emitted, "conns_open": len(self.h.long.conns),
                                    "conns_evicted": self.h.long.stats.conns_evicted,
                                    "parse_errors": self.h.long.stats.parse_errors},
            "seconds": round(el, 1),
            "inputs_per_second": round(self.h.n / el) if el else 0,
            "rss_kib_first": self.samples[0][1] if self.samples else None,
            "rss_kib_max": max((s[1] for s in self.samples), default=None),
            "rss_kib_last": self.samples[-1][1] if self.samples else None,
            "rss_growth_after_warmup_kib": self.growth_kib(),
            "rss_samples": self.samples[:: max(1, len(self.samples) // 50)],
            "failed_inputs": self.failed_inputs,
            "failures": [dict(f, count=self.signatures.get(f["error"], 0)) for f in self.failures],
            "finished": final,
            "result": "pass" if self.ok() and final else ("fail" if not self.ok() else "running"),
        }
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(res, indent=1) + "\n")
        if final:
            print(f"fuzz: {res['result']}: {self.h.n:,} inputs in {el:.0f} s ({res['inputs_per_second']:,}/s), "
                  f"{len(self.failures)} failures, RSS {res['rss_kib_first']}->{res['rss_kib_last']} KiB "
                  f"(max {res['rss_kib_max']}), growth after warm-up {res['rss_growth_after_warmup_kib']} KiB; "
                  f"{self.out}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--inputs", type=int, default=1_000_000)
    ap.add_argument("--engine", choices=("atheris", "random"), default="atheris" if atheris else "random")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=str(HERE / "results" / "last-run.json"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.engine == "atheris":
        if atheris is None:
            print("fuzz: atheris is not installed; use --engine random", file=sys.stderr)
            return 2
        with atheris.instrument_imports(include=["agtap"]):
            _import_targets()
    else:
        _import_targets()
    run = Run(args.inputs, args.engine, out)
    run.sample()
    print(f"fuzz: {args.engine}, {args.inputs:,} inputs, {len(SEEDS)} seed exchanges", flush=True)
    if args.engine == "atheris":
        crashes = HERE / "crashes"
        crashes.mkdir(exist_ok=True)
        atheris.Setup([sys.argv[0], f"-runs={args.inputs + 100_000}", "-max_len=8192", "-timeout=30",
                       "-rss_limit_mb=3072", f"-seed={args.seed}", f"-artifact_prefix={crashes}/",
                       "-print_final_stats=1"], run.test_one)
        atheris.Fuzz()
        run.write(final=True)
        return 0 if run.ok() else 1
    rng = random.Random(args.seed)
    while True:   # ends in test_one at the target count
        n = rng.choice((8, 32, 128, 512, 2048, 8192))
        run.test_one(rng.randbytes(rng.randint(1, n)))


if __name__ == "__main__":
    sys.exit(main())
