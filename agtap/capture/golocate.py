"""Find crypto/tls.(*Conn).Write, Read and Close in a Go executable, and every RET in them.

Go does TLS in its own crypto/tls, so a Go program's plaintext is seen by probing
`(*Conn).Write(b []byte) (int, error)` and `(*Conn).Read(b []byte) (int, error)`. Never
with a uretprobe (a goroutine's stack is copied when it grows, and the return address the
kernel planted on it then sends the goroutine into the trampoline on another stack): an
entry uprobe, plus a uprobe on every RET instruction of the function instead.

A Go executable is recognised by its build info (`.go.buildinfo`, magic "\\xff Go
buildinf:"), whatever it is called; the build info also holds the Go version (an inline
string since Go 1.18, a pointer to a Go string before). The functions are found

  - in the ELF symbol table when the binary has one ("symtab"), each with its size, and
    checked against `.gopclntab` when that can be read;
  - else in `.gopclntab` ("pclntab"), which Go keeps in binaries linked with `-s -w`: its
    function table maps each function's entry to its `_func` record, whose name offset
    points into the function name table. A function ends where the next one in the table
    begins (Go pads the gap with int3). Layouts read: Go 1.16/1.17 (magic 0xfffffffa),
    1.18/1.19 (0xfffffff0), 1.20 and later (0xfffffff1, unchanged up to 1.24 at least).

Each function is disassembled from its entry to its end (capstone, linearly: Go puts no data
in its code on amd64); the disassembly must cover the range exactly, every RET is a probe
point. Go < 1.17 passes arguments on the stack (and 1.17/1.18 builds with
GOEXPERIMENT=noregabi too): refused, the probes read registers.

Addresses: `GoFunc.entry` and `.rets` are ELF virtual addresses, which is what BCC's
`attach_uprobe(name=path, addr=...)` takes: BCC turns them into file offsets through the
program headers itself (checked on bcc 0.26: 0x594640 -> 0x194640 for a Go 1.19 binary whose
text segment is at 0x400000 from offset 0; a file offset passed there is rejected).
`.entry_offset` / `.ret_offsets` are the file offsets (what perf_event_open's uprobe PMU and
uprobe_events take).

Kernel cost: Go functions begin with the stack-bound check `cmp rsp, [r14+0x10]` (or `lea
r12, [rsp-N]` before it for big frames), which the x86 uprobe code does not emulate: it is
single-stepped out of line, a second trap per call. RET is not emulated either (the kernel
executes it out of line with its ip fix-up off): also one single-step per return.
"""

from __future__ import annotations

import functools
import mmap
import os
import re
import struct
from dataclasses import dataclass, field

from agtap.capture import boringssl
from agtap.capture.elfsyms import SHT_SYMTAB, functions, sections

BUILDINFO_MAGIC = b"\xff Go buildinf:"
BUILDINFO_ALIGN, BUILDINFO_HEADER = 16, 32
BUILDINFO_SEARCH = 64 << 10     # bytes of the data segment searched, as Go's debug/buildinfo does
FUNCS = {"write": "crypto/tls.(*Conn).Write",
         "read": "crypto/tls.(*Conn).Read",
         "close": "crypto/tls.(*Conn).Close"}
REQUIRED = ("write", "read")    # Close is probed when present (the linker may drop it)
PCLNTAB = {0xFFFFFFFA: "Go 1.16/1.17", 0xFFFFFFF0: "Go 1.18/1.19", 0xFFFFFFF1: "Go 1.20+"}
MAX_FUNCTION = 256 << 10        # a larger "function" means a misread table
EM_X86_64, PF_X, PF_W = 62, 1, 2
INT3 = 0xCC


class GoRefused(Exception):
    """A Go binary whose crypto/tls functions are not probed, and why (one line)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class GoNoTls(GoRefused):
    """A Go binary that does not link crypto/tls's Conn: nothing to probe, nothing wrong."""


@dataclass(frozen=True, slots=True)
class GoFunc:
    entry: int                   # ELF virtual address of the first instruction (BCC addr=)
    rets: tuple[int, ...]        # ELF virtual address of every RET in the function
    size: int = 0                # bytes from entry to the function's end
    delta: int = 0               # virtual address - file offset, in its segment
    first: str = ""              # the entry instruction, as capstone prints it

    @property
    def entry_offset(self) -> int:
        return self.entry - self.delta

    @property
    def ret_offsets(self) -> tuple[int, ...]:
        return tuple(r - self.delta for r in self.rets)


@dataclass(frozen=True, slots=True)
class GoTlsLocation:
    go_version: str                      # "go1.19.8", from the build info
    method: str                          # "symtab" | "pclntab"
    functions: dict[str, GoFunc]         # "write", "read" and (when linked) "close"
    path: str = ""
    checked: str = ""                    # what else confirmed it, or why nothing could

    def describe(self) -> str:
        """One line for `agtap doctor` and -v."""
        parts = [f"{k.capitalize()} at {f.entry:#x} ({len(f.rets)} RET)" for k, f in self.functions.items()]
        how = "symbol table" if self.method == "symtab" else ".gopclntab (no symbol table)"
        return f"{self.go_version}: crypto/tls (*Conn) found in the {how}: " + ", ".join(parts) + \
            (f"; {self.checked}" if self.checked else "")


@dataclass(frozen=True, slots=True)
class BuildInfo:
    version: str        # runtime.Version(): "go1.24.4", "devel go1.23-abc..."
    modinfo: str        # the module and build-settings text (`go version -m`)


def _open(path: str):
    f = open(path, "rb")
    try:
        return f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except BaseException:
        f.close()
        raise


def is_go_binary(path: str) -> bool:
    """Whether `path` is an ELF file built by Go: build info, or (Go < 1.13) a .gopclntab.
    Cheap: the section headers, at most a 64 KiB search; never raises."""
    try:
        f, m = _open(path)
    except (OSError, ValueError):
        return False
    with f, m:
        try:
            if m[:4] != b"\x7fELF":
                return False
            return _buildinfo_at(m, boringssl.Elf(m), sections(m)) is not None or ".gopclntab" in sections(m)
        except (boringssl.Refusal, ValueError, struct.error, IndexError):
            return False


def build_info(path: str) -> BuildInfo | None:
    """The Go version and module info of `path`, None if it has no Go build info."""
    try:
        f, m = _open(path)
    except (OSError, ValueError):
        return None
    with f, m:
        try:
            elf = boringssl.Elf(m)
            return _read_buildinfo(m, elf, _buildinfo_at(m, elf, sections(m)))
        except (boringssl.Refusal, ValueError, struct.error, IndexError, UnicodeDecodeError):
            return None


def _buildinfo_at(m, elf: boringssl.Elf, secs) -> int | None:
    """File offset of the build info header: the .go.buildinfo section, else the first
    16-aligned magic in the first 64 KiB of the first writable segment (debug/buildinfo's rule)."""
    sec = secs.get(".go.buildinfo")
    if sec is not None and m[sec.offset:sec.offset + len(BUILDINFO_MAGIC)] == BUILDINFO_MAGIC:
        return sec.offset
    seg = next((s for s in elf.loads if s.flags & PF_W), None)
    if seg is None:
        return None
    at, end = seg.offset, seg.offset + min(seg.size, BUILDINFO_SEARCH)
    while (at := m.find(BUILDINFO_MAGIC, at, end)) >= 0:
        if (at - seg.offset) % BUILDINFO_ALIGN == 0 and at + BUILDINFO_HEADER <= end:
            return at
        at += 1
    return None


def _read_buildinfo(m, elf: boringssl.Elf, at: int | None) -> BuildInfo | None:
    if at is None:
        return None
    ptr_size, flags = m[at + 14], m[at + 15]
    if flags & 2:      # Go >= 1.18: two varint-length strings after the header
        version, nxt = _varint_string(m, at + BUILDINFO_HEADER)
        modinfo, _ = _varint_string(m, nxt)
    else:              # Go < 1.18: pointers to two Go strings (data pointer, length)
        if ptr_size != 8 or flags & 1:
            return None
        vptr, mptr = struct.unpack_from("<QQ", m, at + 16)
        version, modinfo = _go_string(m, elf, vptr), _go_string(m, elf, mptr)
    if len(modinfo) >= 33 and modinfo[-17] == 0x0A:    # 16-byte sentinels around the text
        modinfo = modinfo[16:-16]
    return BuildInfo(version.decode("utf-8", "replace"), modinfo.decode("utf-8", "replace"))


def _varint_string(m, at: int) -> tuple[bytes, int]:
    n = shift = 0
    while True:
        b = m[at]
        at += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift > 63:
            raise ValueError("bad varint in build info")
    return bytes(m[at:at + n]), at + n


def _go_string(m, elf: boringssl.Elf, addr: int) -> bytes:
    hdr = elf.offset(addr)
    if hdr is None:
        return b""
    data, n = struct.unpack_from("<QQ", m, hdr)
    off = elf.offset(data)
    return b"" if off is None or n > 1 << 20 else bytes(m[off:off + n])


def go_minor(version: str) -> int | None:
    """17 for "go1.17.13", 23 for "devel go1.23-abc", None if not a Go 1.x version string."""
    mo = re.search(r"go1\.(\d+)", version)
    return int(mo.group(1)) if mo else None


# -- locating ----------------------------------------------------------------

def locate_go_tls(path: str) -> GoTlsLocation:
    """crypto/tls.(*Conn).Write/Read/Close of the Go executable at `path`, with every RET;
    raises GoRefused (GoNoTls when it simply has no crypto/tls) with the reason otherwise.
    Cached by (path, device, inode, size, mtime)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise GoRefused(f"unreadable: {e.strerror}") from None
    return _cached(path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _cached(path: str, _dev: int, _ino: int, _size: int, _mtime: int) -> GoTlsLocation:
    try:
        f, m = _open(path)
    except (OSError, ValueError) as e:
        raise GoRefused(f"unreadable: {e}") from None
    with f, m:
        try:
            return _locate(path, m)
        except boringssl.Refusal as e:
            raise GoRefused(str(e)) from None
        except (ValueError, struct.error, IndexError) as e:
            raise GoRefused(f"malformed Go tables ({e})") from None


def _locate(path: str, m) -> GoTlsLocation:
    elf = boringssl.Elf(m)
    if elf.machine != EM_X86_64:
        raise GoRefused("not an x86-64 executable (the probes read amd64 registers)")
    secs = sections(m)
    info = _read_buildinfo(m, elf, _buildinfo_at(m, elf, secs))
    if info is None:
        if ".gopclntab" in secs:
            raise GoRefused("Go without build info (older than Go 1.13): stack-based calling "
                            "convention, not supported")
        raise GoRefused("no Go build info (.go.buildinfo): not a Go executable")
    minor = go_minor(info.version)
    if minor is None:
        raise GoRefused(f"unrecognised Go version string {info.version!r}")
    if minor < 17:
        raise GoRefused(f"{info.version}: Go older than 1.17 passes arguments on the stack, "
                        "the probes read the register ABI (Go >= 1.17)")
    if "noregabi" in info.version or "noregabi" in info.modinfo:
        raise GoRefused(f"{info.version}: built with GOEXPERIMENT=noregabi (stack ABI)")

    syms = functions(m, tuple(FUNCS.values()), SHT_SYMTAB)
    try:
        pcln = _Pclntab(m, elf, secs)
        pcln_error = ""
    except GoRefused as e:
        pcln, pcln_error = None, e.reason
    found: dict[str, tuple[int, int]] = {}      # key -> (entry, end)
    if all(FUNCS[k] in syms for k in REQUIRED):
        method = "symtab"
        for k, name in FUNCS.items():
            if name in syms:
                entry, size = syms[name]
                found[k] = (entry, entry + size)
        checked = _cross_check(m, elf, found, pcln) if pcln else f"not checked against .gopclntab: {pcln_error}"
    elif pcln is not None:
        method, checked = "pclntab", ""
        for k, name in FUNCS.items():
            hit = pcln.find(name)
            if hit is not None:
                found[k] = hit
    else:
        raise GoRefused(f"{info.version}: no symbol table, and .gopclntab unusable: {pcln_error}")
    missing = [FUNCS[k] for k in REQUIRED if k not in found]
    if missing:
        raise GoNoTls(f"{info.version}: does not link {' and '.join(missing)} (no crypto/tls use)")
    md = _capstone()
    funcs = {k: _disassemble(m, elf, FUNCS[k], entry, end, md) for k, (entry, end) in found.items()}
    return GoTlsLocation(info.version, method, funcs, path, checked)


def _cross_check(m, elf: boringssl.Elf, found, pcln: "_Pclntab") -> str:
    """The symbol table's entries and sizes must agree with .gopclntab's table: same entry,
    and the bytes between the symbol's end and the next function all int3 padding."""
    for k, (entry, end) in found.items():
        hit = pcln.find(FUNCS[k])
        if hit is None or hit[0] != entry:
            raise GoRefused(f"the symbol table puts {FUNCS[k]} at {entry:#x}, .gopclntab at "
                            f"{'nowhere' if hit is None else hex(hit[0])}")
        if hit[1] < end or any(b != INT3 for b in _code(m, elf, FUNCS[k], end, hit[1])):
            raise GoRefused(f"{FUNCS[k]}: the symbol's size ends it at {end:#x}, .gopclntab's next "
                            f"function starts at {hit[1]:#x}, with code between")
    return f"agrees with .gopclntab ({pcln.layout})"


class _Pclntab:
    """The function table of .gopclntab: entry addresses and name offsets (numpy arrays)."""

    def __init__(self, m, elf: boringssl.Elf, secs):
        import numpy as np
        sec = secs.get(".gopclntab")
        if sec is None or sec.size < 64:
            raise GoRefused("no .gopclntab section")
        base, size = sec.offset, sec.size
        magic, pad1, pad2, min_lc, ptr_size = struct.unpack_from("<IBBBB", m, base)
        if magic not in PCLNTAB:
            raise GoRefused(f".gopclntab magic {magic:#010x} is not a layout agtap reads "
                            f"(known: {', '.join(f'{k:#x} {v}' for k, v in PCLNTAB.items())})")
        self.layout = PCLNTAB[magic]
        if (pad1, pad2, min_lc, ptr_size) != (0, 0, 1, 8):
            raise GoRefused(f".gopclntab header is not amd64's (pad {pad1},{pad2}, "
                            f"min instruction size {min_lc}, pointer size {ptr_size})")
        words = struct.unpack_from("<8Q", m, base + 8)
        if magic == 0xFFFFFFFA:    # nfunc, nfiles, funcname, cu, filetab, pctab, pcln
            nfunc, text, funcname, pcln_off, field = words[0], 0, words[2], words[6], 8
        else:                      # nfunc, nfiles, textStart, funcname, cu, filetab, pctab, pcln
            nfunc, text, funcname, pcln_off, field = words[0], words[2], words[3], words[7], 4
        if not text and magic != 0xFFFFFFFA:
            raise GoRefused(".gopclntab's text start is 0 (relocated at load time: PIE), not read yet")
        n = 2 * nfunc + 1
        if nfunc == 0 or pcln_off + n * field > size or funcname >= size:
            raise GoRefused(f".gopclntab function table out of bounds ({nfunc} functions)")
        dtype = "<u4" if field == 4 else "<u8"
        table = np.frombuffer(m, dtype=dtype, count=n, offset=base + pcln_off).astype(np.int64)
        entries, funcoffs = table[0::2], table[1::2]           # nfunc + 1 entries (last = end)
        if np.any(np.diff(entries) < 0):
            raise GoRefused(".gopclntab function table is not sorted (misread layout)")
        recs = pcln_off + funcoffs                              # each _func, from the section
        if len(recs) and (recs.min() < 0 or recs.max() + field + 4 > size):
            raise GoRefused(".gopclntab _func record out of bounds")
        sec_bytes = np.frombuffer(m, dtype=np.uint8, count=size, offset=base)
        self.m, self.base, self.size = m, base, size
        self.text, self.entries, self.field = text, entries, field
        self.recs = recs
        self.nameoffs = _gather_u32(sec_bytes, recs + field).astype(np.int32)
        self.funcname = funcname
        self.pcln_off = pcln_off

    def find(self, name: str) -> tuple[int, int] | None:
        """(entry, end) of the function called `name`, None if there is none."""
        import numpy as np
        want = name.encode() + b"\0"
        starts, lo, hi = [], self.base + self.funcname, self.base + self.size
        if self.m[lo:lo + len(want)] == want:
            starts.append(0)
        at = lo
        while (at := self.m.find(b"\0" + want, at, hi)) >= 0:
            starts.append(at + 1 - lo)
            at += 1
        idx = np.flatnonzero(np.isin(self.nameoffs, starts))
        if len(idx) == 0:
            return None
        if len(idx) > 1:
            raise GoRefused(f".gopclntab has {len(idx)} functions named {name}")
        i = int(idx[0])
        entry, end = self.text + int(self.entries[i]), self.text + int(self.entries[i + 1])
        # the _func record repeats the entry: a second reading of the same fact
        rec = self.base + int(self.recs[i])
        own = struct.unpack_from("<I" if self.field == 4 else "<Q", self.m, rec)[0]
        if own + (self.text if self.field == 4 else 0) != entry:
            raise GoRefused(f".gopclntab: {name}'s _func entry {own:#x} disagrees with the function table")
        if not 0 < end - entry <= MAX_FUNCTION:
            raise GoRefused(f".gopclntab: {name} would be {end - entry} bytes long")
        return entry, end


def _gather_u32(a, at):
    """Little-endian u32 at each offset of `at` in the byte array `a` (vectorised)."""
    import numpy as np
    at = at.astype(np.int64)
    return (a[at].astype(np.uint32) | a[at + 1].astype(np.uint32) << 8 |
            a[at + 2].astype(np.uint32) << 16 | a[at + 3].astype(np.uint32) << 24)


def _code(m, elf: boringssl.Elf, name: str, start: int, end: int) -> bytes:
    """The bytes of [start, end) from the executable segment holding them."""
    seg = next((s for s in elf.loads if s.vaddr <= start and end <= s.vaddr + s.size), None)
    if seg is None or not seg.flags & PF_X:
        raise GoRefused(f"{name} at {start:#x}..{end:#x} is not inside an executable segment's file content")
    off = seg.offset + start - seg.vaddr
    return bytes(m[off:off + end - start])


def _capstone():
    try:
        md, _x86 = boringssl._capstone()
    except boringssl.Refusal as e:
        raise GoRefused(str(e)) from None
    md.detail = False
    return md


def _disassemble(m, elf: boringssl.Elf, name: str, entry: int, end: int, md) -> GoFunc:
    """Linear disassembly of the whole function: it must decode up to `end` exactly; every
    RET is returned. Trailing int3 (the linker's padding) decodes too."""
    if not 0 < end - entry <= MAX_FUNCTION:
        raise GoRefused(f"{name}: implausible size {end - entry}")
    code = _code(m, elf, name, entry, end)
    rets, first, at = [], "", entry
    for addr, size, mnemonic, op_str in md.disasm_lite(code, entry):
        if addr == entry:
            first = f"{mnemonic} {op_str}".strip()
        if mnemonic == "ret":
            if size != 1:
                raise GoRefused(f"{name}: `ret` with an operand at {addr:#x} (not Go code?)")
            rets.append(addr)
        at = addr + size
    if at != end:
        raise GoRefused(f"{name}: disassembly stops at {at:#x}, before the function's end {end:#x}")
    if not rets:
        raise GoRefused(f"{name}: no RET instruction between {entry:#x} and {end:#x}")
    seg = next(s for s in elf.loads if s.vaddr <= entry < s.vaddr + s.size)
    return GoFunc(entry, tuple(rets), end - entry, seg.vaddr - seg.offset, first)


def describe(path: str) -> str:
    """One line on a Go binary for `agtap doctor` and -v: version and how its crypto/tls was
    found, or why not."""
    try:
        return locate_go_tls(path).describe()
    except GoNoTls as e:
        return f"not probed: {e.reason}"
    except GoRefused as e:
        return f"refused: {e.reason}"
