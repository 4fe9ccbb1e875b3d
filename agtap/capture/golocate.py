"""Find crypto/tls.(*Conn).Write, Read and Close in a Go executable, and every RET in them.

Go does TLS in its own crypto/tls, so a Go program's plaintext is seen by probing
`(*Conn).Write(b []byte) (int, error)` and `(*Conn).Read(b []byte) (int, error)`. Never
with a uretprobe: it replaces the return address on the goroutine's stack with the kernel's
trampoline, which the Go runtime meets when it walks stacks (garbage collection, stack
growth: "unexpected return pc", fatal), and a stack copied elsewhere when it grows leaves
the kernel's record of that return behind. A uprobe on every RET instruction instead.

A Go executable is recognised by its build info (`.go.buildinfo`, magic "\\xff Go
buildinf:"), whatever it is called; the build info also holds the Go version (an inline
string since Go 1.18, a pointer to a Go string before). The functions are found

  - in the ELF symbol table when the binary has one ("symtab"), each with its size, and
    checked against `.gopclntab` when that can be read;
  - else in Go's function table ("pclntab", gopclntab.py), which Go keeps in binaries
    linked with `-s -w`, PIE or not. A function ends where the next one in the table
    begins (Go pads the gap with int3).

Each function is disassembled from its entry to its end (capstone, linearly: Go puts no data
in its code on amd64); the disassembly must cover the range exactly, every RET is a probe
point. Go < 1.17 passes arguments on the stack: refused, the probes read registers. The
register ABI is also checked on the code itself: only there does a function keep the
goroutine (g) in R14, so its stack-bound check (first or second instruction) must compare
with [r14+0x10]; an ABI0 function loads g from thread-local storage instead (Go 1.17 built
with GOEXPERIMENT=noregabi; Go 1.19 ignores that setting on amd64, and its code shows it).

Addresses: `GoFunc.entry` and `.rets` are ELF virtual addresses, which is what BCC's
`attach_uprobe(name=path, addr=...)` takes: BCC turns them into file offsets through the
program headers itself (checked on bcc 0.26: 0x594640 -> 0x194640 for a Go 1.19 binary whose
text segment is at 0x400000 from offset 0; a file offset passed there is rejected).
`.entry_offset` / `.ret_offsets` are the file offsets (what perf_event_open's uprobe PMU and
uprobe_events take).

Entry: Go functions begin with the stack-bound check `cmp rsp, [r14+0x10]` (after `lea r12,
[rsp-N]` for big frames) and a `jbe` to runtime.morestack, which grows the stack and restarts
the function from its entry: a probe there fires twice for that call. `GoFunc.body` is the
instruction after the `jbe`: reached once per call, registers as at entry. `GoFunc.check` is
the `jbe` itself, what the tracer probes (goprobes.py): reached twice when the stack grows,
but a BPF program there sees the cmp's flags, and a jump is emulated. Kernel cost: the
x86 uprobe code emulates jumps, calls, nops and pushes only; `cmp`, `sub rsp` (Go 1.19's
`body`) and `ret` are single-stepped out of line (a second trap), `push rbp` (Go 1.24's
`body`) is emulated.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass, replace

from agtap.capture import boringssl
from agtap.capture.elfsyms import SHT_SYMTAB, functions, sections
from agtap.capture.gobuildinfo import (BuildInfo, build_info, buildinfo_at, go_minor, is_go_binary,
                                       open_mapped, read_buildinfo)
from agtap.capture.gopclntab import Pclntab, PclntabError, find_pclntab

__all__ = ["BuildInfo", "GoFunc", "GoNoTls", "GoRefused", "GoTlsLocation", "build_info", "describe",
           "go_minor", "is_go_binary", "judge", "locate_go_tls"]
FUNCS = {"write": "crypto/tls.(*Conn).Write",
         "read": "crypto/tls.(*Conn).Read",
         "close": "crypto/tls.(*Conn).Close"}
REQUIRED = ("write", "read")    # Close is probed when present (the linker may drop it)
MAX_FUNCTION = 256 << 10        # a larger "function" means a misread table
MAX_VERDICTS = 512              # files whose verdict is kept
EM_X86_64, PF_X = 62, 1
INT3 = 0xCC
PRINTABLE_VERSION = re.compile(r"[\x21-\x7e][\x20-\x7e]{0,199}")   # it goes into log lines as is
# The prologue of a Go function that may grow its stack, under the register ABI (g in R14):
#   [lea r12, [rsp - N]]   cmp rsp|r12, qword ptr [r14 + 0x10]   jbe <call morestack>
LEA_R12 = re.compile(r"r12, \[rsp - 0x[0-9a-f]+\]")
REGABI_STACK_CHECK = re.compile(r"(rsp|r12), qword ptr \[r14 \+ 0x10\]")


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
    body: int = 0                # ELF virtual address after the stack check's jbe (docstring: Entry)
    check: int = 0               # ELF virtual address of that jbe (what the tracer probes: goprobes.py)

    @property
    def entry_offset(self) -> int:
        return self.entry - self.delta

    @property
    def ret_offsets(self) -> tuple[int, ...]:
        return tuple(r - self.delta for r in self.rets)

    @property
    def body_offset(self) -> int:
        return self.body - self.delta


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


# -- locating ----------------------------------------------------------------

def locate_go_tls(path: str) -> GoTlsLocation:
    """crypto/tls.(*Conn).Write/Read/Close of the Go executable at `path`, with every RET;
    raises GoRefused (GoNoTls when it simply has no crypto/tls) with the reason otherwise.
    Verdicts, refusals included, are kept per file (device, inode, size, mtime), whatever
    path named it: a Go program started again and again, or seen through /proc/PID/exe,
    is read once."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise GoRefused(f"unreadable: {e.strerror}") from None
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    found = _verdicts.get(key)
    if found is None:
        found = _verdicts[key] = _verdict(path)
        while len(_verdicts) > MAX_VERDICTS:
            _verdicts.pop(next(iter(_verdicts)), None)
    if isinstance(found, GoRefused):
        raise type(found)(found.reason)     # a fresh exception each time: no traceback piling up
    return found if found.path == path else replace(found, path=path)


_verdicts: dict[tuple[int, int, int, int], "GoTlsLocation | GoRefused"] = {}


def _verdict(path: str) -> GoTlsLocation | GoRefused:
    try:
        f, m = open_mapped(path)
    except (OSError, ValueError) as e:
        return GoRefused(f"unreadable: {e}")
    with f, m:
        return judge(path, m)


def judge(path: str, m) -> GoTlsLocation | GoRefused:
    """The verdict on the file's bytes `m` (an mmap, or any buffer): never raises. Whatever
    a damaged or hostile file makes the readers trip on is a refusal: nothing is probed."""
    try:
        return _locate(path, m)
    except GoRefused as e:
        return e
    except (boringssl.Refusal, PclntabError) as e:
        return GoRefused(str(e))
    except (ValueError, struct.error, IndexError, OverflowError) as e:
        return GoRefused(f"malformed Go tables ({e})")
    except Exception as e:    # noqa: BLE001 - a reader bug must not become a probe or a crash
        return GoRefused(f"unexpected {type(e).__name__} reading the Go tables: {e}")


def _locate(path: str, m) -> GoTlsLocation:
    elf = boringssl.Elf(m)
    if elf.machine != EM_X86_64:
        raise GoRefused("not an x86-64 executable (the probes read amd64 registers)")
    secs = sections(m)
    info = read_buildinfo(m, elf, buildinfo_at(m, elf, secs))
    if info is None:
        if ".gopclntab" in secs:
            raise GoRefused("Go without build info (older than Go 1.13): stack-based calling "
                            "convention, not supported")
        raise GoRefused("no Go build info (.go.buildinfo): not a Go executable")
    minor = go_minor(info.version)
    if minor is None or not PRINTABLE_VERSION.fullmatch(info.version):
        raise GoRefused(f"unrecognised Go version string {info.version[:64]!r}")
    if minor < 17:
        raise GoRefused(f"{info.version}: Go older than 1.17 passes arguments on the stack, "
                        "the probes read the register ABI (Go >= 1.17)")

    syms = functions(m, tuple(FUNCS.values()), SHT_SYMTAB)
    try:
        pcln, pcln_error = find_pclntab(m, elf, secs), ""
    except PclntabError as e:
        pcln, pcln_error = None, str(e)
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
            hit = pcln.find(name, MAX_FUNCTION)
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


def _cross_check(m, elf: boringssl.Elf, found, pcln: Pclntab) -> str:
    """The symbol table's entries and sizes must agree with .gopclntab's table: same entry,
    and the bytes between the symbol's end and the next function all int3 padding."""
    for k, (entry, end) in found.items():
        hit = pcln.find(FUNCS[k], MAX_FUNCTION)
        if hit is None or hit[0] != entry:
            raise GoRefused(f"the symbol table puts {FUNCS[k]} at {entry:#x}, .gopclntab at "
                            f"{'nowhere' if hit is None else hex(hit[0])}")
        if hit[1] < end or any(b != INT3 for b in _code(m, elf, FUNCS[k], end, hit[1])):
            raise GoRefused(f"{FUNCS[k]}: the symbol's size ends it at {end:#x}, .gopclntab's next "
                            f"function starts at {hit[1]:#x}, with code between")
    return f"agrees with .gopclntab ({pcln.layout})"


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
    rets, head, at = [], [], entry
    for addr, size, mnemonic, op_str in md.disasm_lite(code, entry):
        if len(head) < 3:
            head.append((addr, size, mnemonic, op_str))
        if mnemonic == "ret":
            if size != 1:
                raise GoRefused(f"{name}: `ret` with an operand at {addr:#x} (not Go code?)")
            rets.append(addr)
        at = addr + size
    if at != end:
        raise GoRefused(f"{name}: disassembly stops at {at:#x}, before the function's end {end:#x}")
    if not rets:
        raise GoRefused(f"{name}: no RET instruction between {entry:#x} and {end:#x}")
    check, body = _stack_check(name, head, entry, end)
    seg = next(s for s in elf.loads if s.vaddr <= entry < s.vaddr + s.size)
    first = f"{head[0][2]} {head[0][3]}".strip()
    return GoFunc(entry, tuple(rets), end - entry, seg.vaddr - seg.offset, first, body, check)


def _stack_check(name: str, head, entry: int, end: int) -> tuple[int, int]:
    """The addresses of the prologue's `jbe` and of the instruction after it. Under the
    register ABI only does a function keep g in R14 (an ABI0 function loads it from TLS):
    the check proves the ABI. When the stack is short, the jbe leads to runtime.morestack,
    which grows (copies) the stack and restarts the function from its entry: a probe at the
    entry (or on the jbe) fires twice for such a call, one at `body` once, with the argument
    registers as at entry (the check reads RSP, R12 and R14 only) and RSP unchanged."""
    seen = "; ".join(f"{m} {o}".strip() for _, _, m, o in head)
    i = 1 if head and head[0][2] == "lea" and LEA_R12.fullmatch(head[0][3]) else 0
    if len(head) < i + 2:
        raise GoRefused(f"{name}: no stack check at its entry {entry:#x} ({seen})")
    (_, _, cmp, cmp_ops), (at, length, jbe, target) = head[i], head[i + 1]
    if cmp != "cmp" or not REGABI_STACK_CHECK.fullmatch(cmp_ops) or not cmp_ops.startswith("r12" if i else "rsp"):
        raise GoRefused(f"{name} begins `{seen}`, not the register ABI's stack check against g in R14 "
                        "(stack ABI: GOEXPERIMENT=noregabi?)")
    if jbe != "jbe" or not target.startswith("0x") or not entry < int(target, 16) < end:
        raise GoRefused(f"{name}: its stack check is not followed by a jbe inside the function ({seen})")
    return at, at + length


def describe(path: str) -> str:
    """One line on a Go binary for `agtap doctor` and -v: version and how its crypto/tls was
    found, or why not."""
    try:
        return locate_go_tls(path).describe()
    except GoNoTls as e:
        return f"not probed: {e.reason}"
    except GoRefused as e:
        return f"refused: {e.reason}"
