"""BoringSSL verdicts of executables, computed once per build and kept under the cache dir.

A verdict says whether agtap located SSL_read/SSL_write in a binary with statically
linked BoringSSL (boringssl.locate, seconds on a 400 MB binary) and where, or why
not. One JSON file per binary in <cache_dir>/boringssl/, named by its build-id and
holding the build-id, size and mtime it was computed for: an entry is used only if
all three match the file, it parses, it is owned by root and not writable by others,
and the located addresses still begin with a push. Anything else is ignored and the
binary scanned again. `agtap doctor` lists these entries: every BoringSSL binary the
tracer has seen, with its verdict.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass

from agtap.capture import boringssl
from agtap.capture.elfsyms import code_at

FORMAT = 2                  # 2: the SSL destructor (`free`) too
PUSH_FIRST = re.compile(rb"^(?:\x55|\x41[\x50-\x57]|[\x50-\x57])")   # push %reg


@dataclass(slots=True)
class Verdict:
    path: str
    build_id: str
    size: int
    mtime_ns: int
    located: bool
    detail: str                     # how it was located, or why not
    write: int = 0
    read: int = 0
    free: int = 0                   # ssl_st::~ssl_st, where a connection ends (0: not located)
    scan_seconds: float = 0.0
    cached: bool = False

    @property
    def symbols(self) -> dict[str, int]:
        if not self.located:
            return {}
        return {"SSL_write": self.write, "SSL_read": self.read} | ({"SSL_free": self.free} if self.free else {})

    def line(self) -> str:
        if self.located:
            return (f"BoringSSL located by {self.detail}, build-id {self.build_id or 'none'}"
                    f"{' (cached)' if self.cached else f' in {self.scan_seconds:.1f} s'}")
        return f"BoringSSL present, not located: {self.detail} (build-id {self.build_id or 'none'})"


def cache_path(cache_dir: str, build_id: str, size: int) -> str:
    return os.path.join(cache_dir, "boringssl", f"{build_id or 'no-build-id'}-{size}.json")


def _build_id(path: str) -> str:
    import mmap
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return boringssl.Elf(m).build_id
    except (OSError, ValueError, boringssl.Refusal):
        return ""


def load(cache_dir: str, path: str, st: os.stat_result, build_id: str) -> Verdict | None:
    """The cached verdict for this exact file, or None (absent, corrupt or foreign)."""
    p = cache_path(cache_dir, build_id, st.st_size)
    try:
        with open(p, "rb") as f:
            fst = os.fstat(f.fileno())
            if fst.st_uid != 0 and fst.st_uid != os.geteuid() or fst.st_mode & 0o002:
                return None   # not written by agtap's user
            d = json.loads(f.read(65536))
        if d.pop("format", None) != FORMAT:
            return None
        v = Verdict(**{k: d[k] for k in Verdict.__dataclass_fields__ if k != "cached"})
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if (v.build_id, v.size, v.mtime_ns) != (build_id, st.st_size, st.st_mtime_ns):
        return None
    if not isinstance(v.located, bool) or not all(isinstance(x, int) for x in (v.write, v.read, v.free)):
        return None
    if v.located and not all(PUSH_FIRST.match(code_at(path, a, 2)) for a in (v.write, v.read, v.free) if a):
        return None   # a stale or forged entry: never probe an address that is not a push
    v.path, v.cached = path, True
    return v


def store(cache_dir: str, v: Verdict) -> None:
    p = cache_path(cache_dir, v.build_id, v.size)
    d = asdict(v)
    d.pop("cached")
    d["format"] = FORMAT
    try:
        os.makedirs(os.path.dirname(p), mode=0o755, exist_ok=True)
        tmp = f"{p}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(d, f, indent=1)
        os.replace(tmp, p)
    except OSError:
        pass   # a read-only cache costs a rescan next time, nothing else


def verdict(path: str, cache_dir: str) -> Verdict:
    """The binary's verdict: from the cache if it holds this build, else by scanning it."""
    st = os.stat(path)
    build_id = _build_id(path)
    cached = load(cache_dir, path, st, build_id)
    if cached is not None:
        return cached
    try:
        loc = boringssl.locate(path)
        v = Verdict(path, build_id, st.st_size, st.st_mtime_ns, True, loc.how, loc.write, loc.read,
                    loc.free, round(loc.scan_seconds, 3))
    except boringssl.Refusal as e:
        v = Verdict(path, build_id, st.st_size, st.st_mtime_ns, False, str(e))
    store(cache_dir, v)
    return v


def seen(cache_dir: str) -> list[Verdict]:
    """Every verdict in the cache (for `agtap doctor`), whether or not its file still exists."""
    d = os.path.join(cache_dir, "boringssl")
    out = []
    try:
        names = sorted(os.listdir(d))
    except OSError:
        return out
    for n in names:
        if not n.endswith(".json"):
            continue
        try:
            with open(os.path.join(d, n)) as f:
                x = json.load(f)
            x.pop("format", None)
            # an entry of an older format lacks the newer fields: listed with their defaults
            out.append(Verdict(**{k: x[k] for k in Verdict.__dataclass_fields__ if k in x and k != "cached"}))
        except (OSError, ValueError, TypeError, KeyError):
            continue
    return out
