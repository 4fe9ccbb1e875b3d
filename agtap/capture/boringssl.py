"""Find BoringSSL's SSL_read and SSL_write in an executable that has no symbols for them
(and where a connection ends: boringend.py).

Bun (and every program compiled with it: Claude Code, opencode) links BoringSSL
statically and strips its symbols. What survives is BoringSSL's error reporting:
`OPENSSL_PUT_ERROR(SSL, reason)` passes ERR_LIB_SSL (16), the reason code, the
source file's path and the line to the error function. In a non-PIE executable
the path's address is a 32-bit immediate (`mov $addr,%reg`); the reason and
the line are immediates in the neighbouring argument registers. So every error
site of ssl/ssl_lib.cc can be found by a byte search, and each of its reason
codes read off the instructions around it (capstone).

The functions are told apart by the reasons they report, which come from
BoringSSL's source and do not change with the compiler:

  SSL_write       SSL_R_UNINITIALIZED (226) and SSL_R_BAD_LENGTH (111)
  ssl_read_impl   SSL_R_UNINITIALIZED (226) and SSL_R_SSL_HANDSHAKE_FAILURE (215)
  SSL_read        ERR_R_SHOULD_NOT_HAVE_BEEN_CALLED (66, the QUIC check of the
                  SSL_peek it calls, inlined), then a direct call of ssl_read_impl

Function starts come from the targets of direct calls (every `e8 rel32` in the
text, found with numpy), where a function ends just before them (x86code.py).
A candidate is kept only if it passes every check in `_verify`: linear
disassembly from the start reaches each of its error sites on an instruction
boundary, its first instruction is a `push` (the kernel emulates it: no
single-step per call, see probepoints.py), it is called directly, and it reads
its three arguments (ssl, buf, num) before overwriting them. Anything
ambiguous or missing gives a `Refusal` that says why; nothing is guessed.
"""

from __future__ import annotations

import mmap
import re
import struct
import time
from dataclasses import dataclass, field

from agtap.capture import boringend, x86code

MARKER = b"boringssl/ssl/ssl_lib.cc\0"
# any of BoringSSL's ssl/ source paths: the library is linked in. Bun vendors it as
# vendor/boringssl/ssl/, Chromium (and so Electron) as third_party/boringssl/src/ssl/.
PRESENT = (b"boringssl/ssl/", b"boringssl/src/ssl/")
ERR_LIB_SSL = 16
R_SHOULD_NOT_HAVE_BEEN_CALLED = 66
R_BAD_LENGTH = 111
R_SSL_HANDSHAKE_FAILURE = 215
R_UNINITIALIZED = 226

ARG_REGS = ("edi", "esi", "edx", "ecx", "r8d", "r9d")   # System V order, 32-bit names
FULL_REGS = {"edi": "rdi", "esi": "rsi", "edx": "rdx", "ecx": "rcx", "r8d": "r8", "r9d": "r9"}
ET_EXEC, PT_LOAD, PT_NOTE, PF_X = 2, 1, 4, 1


class Refusal(Exception):
    """The binary carries BoringSSL but its functions were not located with certainty."""


@dataclass(frozen=True, slots=True)
class ErrorSite:
    addr: int         # address of the `mov $path,%reg`
    reason: int
    line: int


@dataclass(slots=True)
class Located:
    write: int                       # SSL_write(ssl, buf, num) -> int
    read: int                        # SSL_read(ssl, buf, num) -> int
    how: str                         # one line: what proved it
    free: int = 0                    # ssl_st::~ssl_st(ssl), where a connection ends (0: not located)
    scan_seconds: float = 0.0
    sites: list[ErrorSite] = field(default_factory=list)

    @property
    def symbols(self) -> dict[str, int]:
        return {"SSL_write": self.write, "SSL_read": self.read} | ({"SSL_free": self.free} if self.free else {})


@dataclass(frozen=True, slots=True)
class Segment:
    offset: int
    vaddr: int
    size: int
    flags: int


class Elf:
    """The parts of an ELF64 little-endian file the locator reads (mmap'd, no copy)."""

    def __init__(self, m: mmap.mmap):
        if m[:4] != b"\x7fELF" or m[4] != 2 or m[5] != 1:
            raise Refusal("not an ELF64 little-endian file")
        self.m = m
        self.type, self.machine = struct.unpack_from("<HH", m, 0x10)
        phoff, = struct.unpack_from("<Q", m, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", m, 0x36)
        self.loads: list[Segment] = []
        self.build_id = ""
        for i in range(phnum):
            p_type, flags, off, vaddr, _pa, filesz = struct.unpack_from("<IIQQQQ", m, phoff + i * phentsize)
            if p_type == PT_LOAD:
                self.loads.append(Segment(off, vaddr, filesz, flags))
            elif p_type == PT_NOTE and not self.build_id:
                self.build_id = _build_id(m, off, filesz)

    def vaddr(self, off: int) -> int | None:
        for s in self.loads:
            if s.offset <= off < s.offset + s.size:
                return s.vaddr + off - s.offset
        return None

    def offset(self, vaddr: int) -> int | None:
        """The file offset holding virtual address `vaddr` (None if no segment's file part does)."""
        for s in self.loads:
            if s.vaddr <= vaddr < s.vaddr + s.size:
                return s.offset + vaddr - s.vaddr
        return None

    def code(self) -> Segment:
        xs = [s for s in self.loads if s.flags & PF_X]
        if len(xs) != 1:
            raise Refusal(f"{len(xs)} executable segments (the locator reads exactly one)")
        return xs[0]


def _build_id(m, off: int, size: int) -> str:
    end = off + size
    while off + 12 <= end:
        namesz, descsz, ntype = struct.unpack_from("<III", m, off)
        name_end = off + 12 + (namesz + 3 & ~3)
        if ntype == 3 and m[off + 12:off + 12 + namesz] == b"GNU\0":
            return bytes(m[name_end:name_end + descsz]).hex()
        off = name_end + (descsz + 3 & ~3)
    return ""


def has_marker(path: str) -> bool:
    """Whether the ELF file carries a BoringSSL ssl/ source path (one search of the file)."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return m[:4] == b"\x7fELF" and any(m.find(p) >= 0 for p in PRESENT)
    except (OSError, ValueError):
        return False


def locate(path: str) -> Located:
    """SSL_write and SSL_read of the BoringSSL in `path`, verified; raises Refusal otherwise."""
    t0 = time.monotonic()
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            loc = _locate(Elf(m))
    except (OSError, ValueError, struct.error) as e:
        raise Refusal(f"unreadable: {e}") from None
    loc.scan_seconds = time.monotonic() - t0
    return loc


def _capstone():
    try:
        import capstone
        from capstone import x86
    except ImportError:
        raise Refusal("python3-capstone is not installed (sudo apt-get install python3-capstone)") from None
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    md.detail = True
    return md, x86


def _locate(elf: Elf) -> Located:
    if elf.machine != 62:
        raise Refusal("not an x86-64 executable")
    if elf.type != ET_EXEC:
        raise Refusal("position-independent executable (Chromium, Electron): its ssl_lib.cc references are "
                      "RIP-relative, which this locator does not read yet")
    m = elf.m
    paths = _path_strings(m)
    if not paths:
        raise Refusal("no ssl_lib.cc path string (damaged or not BoringSSL)")
    code = elf.code()
    md, x86 = _capstone()
    with memoryview(m) as mv, mv[code.offset:code.offset + code.size] as text:
        return _locate_in(elf, paths, text, code, md, x86)


def _locate_in(elf: Elf, paths, text, code: Segment, md, x86) -> Located:
    sites = _error_sites(elf, paths, text, code, md, x86)
    if not sites:
        raise Refusal("the ssl_lib.cc path string is not referenced by any error site")
    starts = x86code.call_targets(text)
    funcs: dict[int, list[ErrorSite]] = {}
    for s in sites:
        f = x86code.function_start(text, code.vaddr, starts, s.addr)
        if f is not None:
            funcs.setdefault(f, []).append(s)
    reasons = {f: {s.reason for s in ss} for f, ss in funcs.items()}
    writes = [f for f, r in reasons.items() if {R_UNINITIALIZED, R_BAD_LENGTH} <= r]
    if len(writes) != 1:
        raise Refusal(f"{len(writes)} functions report SSL_write's errors (UNINITIALIZED and BAD_LENGTH); want 1")
    write = writes[0]
    impls = [f for f, r in reasons.items()
             if {R_UNINITIALIZED, R_SSL_HANDSHAKE_FAILURE} <= r and R_BAD_LENGTH not in r]
    write_lines = [s.line for s in funcs[write]]
    reads = []
    for f, ss in funcs.items():
        if f == write or R_SHOULD_NOT_HAVE_BEEN_CALLED not in reasons[f]:
            continue
        quic = min(s.line for s in ss if s.reason == R_SHOULD_NOT_HAVE_BEEN_CALLED)
        if quic >= min(write_lines):
            continue   # SSL_read and SSL_peek come before SSL_write in ssl_lib.cc
        if any(_calls(text, code.vaddr, f, i, starts, md) for i in impls):
            reads.append(f)
    if len(reads) != 1:
        raise Refusal(f"{len(reads)} functions have SSL_read's shape (QUIC check, then ssl_read_impl); want 1")
    read = reads[0]
    for name, f in (("SSL_write", write), ("SSL_read", read)):
        _verify(name, text, code.vaddr, f, funcs[f], starts, md, x86)
    if not _writes_memory_after_call(text, code.vaddr, read, starts, md, x86):
        raise Refusal(f"the SSL_read candidate at {read:#x} never updates the connection (SSL_peek?)")
    how = (f"ssl_lib.cc error sites: SSL_write at {write:#x} (reasons {sorted(reasons[write])}), "
           f"SSL_read at {read:#x} (QUIC check, calls ssl_read_impl)")
    try:
        free, end_how = boringend.locate(text, code.vaddr, reasons, starts, md, x86)
    except boringend.NotLocated as e:
        free, end_how = 0, f"connection end not located ({e}): a connection ends at its process's exit"
    return Located(write, read, f"{how}; {end_how}", free=free, sites=sites)


def _path_strings(m) -> list[tuple[int, bytes]]:
    """(file offset, bytes) of every NUL-terminated string ending in MARKER."""
    out, at = [], m.find(MARKER)
    while at >= 0:
        start = at
        while start > 0 and 0x21 <= m[start - 1] <= 0x7E and at - start < 4096:
            start -= 1
        out.append((start, bytes(m[start:at + len(MARKER) - 1])))
        at = m.find(MARKER, at + 1)
    return out


def _error_sites(elf: Elf, paths, text, code: Segment, md, x86) -> list[ErrorSite]:
    """Every `mov $path,%reg32` in the code whose neighbouring argument registers carry
    ERR_LIB_SSL and a reason and line, for any start of any ssl_lib.cc path string (the
    linker may share a string's tail, so the reference can point into a longer one)."""
    addrs = set()
    for start, s in paths:
        for k in [0] + [i + 1 for i in range(len(s)) if s[i:i + 1] == b"/"]:
            v = elf.vaddr(start + k)
            if v is not None and v < 1 << 32:
                addrs.add(v)
    if not addrs:
        return []
    hits = x86code.find_u32(text, sorted(addrs))
    out = []
    for at in sorted(hits):
        p = at - 1
        if p < 1 or not 0xB8 <= text[p] <= 0xBF:
            continue
        start = p - 1 if text[p - 1] == 0x41 else p
        site = code.vaddr + start
        args = _immediates(bytes(text[start:start + 64]), site, md, x86)
        reg = next((r for r, v in args.items() if v in addrs), None)
        if reg not in ARG_REGS[1:-1]:
            continue
        i = ARG_REGS.index(reg)
        reason, line = args.get(ARG_REGS[i - 1]), args.get(ARG_REGS[i + 1])
        lib = args.get("edi")
        if reason is None or line is None or (lib is not None and lib != ERR_LIB_SSL):
            continue
        out.append(ErrorSite(site, reason, line))
    return out


def _immediates(code: bytes, addr: int, md, x86) -> dict[str, int]:
    """32-bit register -> immediate moved into it, from addr up to the first call or jump."""
    out: dict[str, int] = {}
    for ins in md.disasm(code, addr):
        if ins.group(x86.X86_GRP_JUMP) or ins.group(x86.X86_GRP_CALL) or ins.group(x86.X86_GRP_RET):
            break
        ops = ins.operands
        if ins.id == x86.X86_INS_MOV and len(ops) == 2 and ops[0].type == x86.X86_OP_REG \
                and ops[1].type == x86.X86_OP_IMM:
            out[ins.reg_name(ops[0].reg)] = ops[1].imm & 0xFFFFFFFF
        elif ins.id == x86.X86_INS_XOR and len(ops) == 2 and ops[0].type == x86.X86_OP_REG \
                and ops[1].type == x86.X86_OP_REG and ops[0].reg == ops[1].reg:
            out[ins.reg_name(ops[0].reg)] = 0
    return out


def _calls(text, base: int, func: int, target: int, starts, md) -> bool:
    return any(i.mnemonic == "call" and i.op_str == hex(target) for i in x86code.disasm(text, base, func, starts, md))


def _verify(name: str, text, base: int, func: int, sites: list[ErrorSite], starts, md, x86) -> None:
    ins = x86code.disasm(text, base, func, starts, md)
    if not ins:
        raise Refusal(f"{name} candidate at {func:#x} does not disassemble")
    if ins[0].id != x86.X86_INS_PUSH:
        raise Refusal(f"{name} at {func:#x} begins with `{ins[0].mnemonic} {ins[0].op_str}`, not a push: "
                      "the kernel would single-step it")
    bounds = {i.address for i in ins}
    lost = [s.addr for s in sites if s.addr not in bounds]
    if lost:
        raise Refusal(f"{name} candidate at {func:#x}: its error sites {[hex(a) for a in lost]} "
                      "are not instruction boundaries of its disassembly")
    import numpy as np
    k = int(np.searchsorted(starts, func - base))
    if k >= len(starts) or starts[k] != func - base:
        raise Refusal(f"{name} candidate at {func:#x} is never called directly")
    # ssl in rdi, buf in rsi, num in edx: each is read (or saved) before anything overwrites it
    pending = {"rdi", "rsi", "rdx"}
    for i in ins:
        if i.group(x86.X86_GRP_CALL) or i.group(x86.X86_GRP_JUMP) or i.group(x86.X86_GRP_RET):
            break
        read, written = i.regs_access()
        pending -= {_full(i.reg_name(r)) for r in read}
        if pending & {_full(i.reg_name(r)) for r in written}:
            raise Refusal(f"{name} candidate at {func:#x} overwrites an argument register before reading it")
    if pending - {"rdx", "rsi"}:
        raise Refusal(f"{name} candidate at {func:#x} does not read its SSL* argument before its first call")


def _full(reg: str) -> str:
    return FULL_REGS.get(reg, {"dil": "rdi", "sil": "rsi", "dl": "rdx", "dx": "rdx", "si": "rsi",
                               "di": "rdi"}.get(reg, reg))


def _writes_memory_after_call(text, base: int, func: int, starts, md, x86) -> bool:
    """SSL_read, unlike SSL_peek, advances ssl->s3->pending_app_data after its read: a store
    through a register other than the stack and frame pointers after the first call."""
    seen_call = False
    for i in x86code.disasm(text, base, func, starts, md):
        if i.group(x86.X86_GRP_CALL):
            seen_call = True
            continue
        if not seen_call or not i.operands or i.operands[0].type != x86.X86_OP_MEM:
            continue
        if i.id in (x86.X86_INS_CMP, x86.X86_INS_TEST, x86.X86_INS_PUSH):
            continue
        b = i.reg_name(i.operands[0].mem.base) if i.operands[0].mem.base else ""
        if b and b not in ("rsp", "rbp", "rip"):
            return True
    return False
