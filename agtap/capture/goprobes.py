"""Where the uprobes of a Go program's crypto/tls go, and which BPF program each runs.

golocate.py finds (*Conn).Write, Read and Close and every RET of each. Here each function's
probe is put not at its first instruction but on the conditional jump of its stack check,
the prologue of every Go function that may grow its stack:

    [lea r12, [rsp - N]]   cmp rsp|r12, qword ptr [r14 + 0x10]   jbe <morestack call>

When the goroutine's stack is too small, the jbe leads to runtime.morestack, which copies
the stack and restarts the function from its first instruction: a probe at the entry fires
twice for one call, and Write, copied at entry, would be recorded twice. On the jbe the
BPF program sees the flags of the comparison and returns when the jump will be taken
(bpf/gotls.c): each call is seen once, with every argument register as at entry (the check
reads RSP, R12 and R14 only) and RSP unchanged. And the kernel emulates a conditional jump,
where it single-steps the `cmp` at the entry (and Go 1.19's `sub rsp` after the jbe): a
single-step costs ~10 µs on this machine's virtual CPU (bench 1, bare uprobes). Read's RETs
are probed as they are (RET is single-stepped: unavoidable); Write's are not needed.

Anything else at the start of a function is refused with the instructions found: a
probe goes only where the code was read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agtap.capture.elfsyms import code_at
from agtap.capture.golocate import GoRefused, GoTlsLocation

# BPF programs (bpf/gotls.c): function -> (at its stack check, at each of its RETs)
PROGRAMS = {"write": ("probe_gotls_write", None),
            "read": ("probe_gotls_read", "probe_gotls_read_ret"),
            "close": ("probe_gotls_close", None)}
STACK_CHECK = re.compile(r"(rsp|r12), qword ptr \[r14 \+ 0x10\]")
LEA_R12 = re.compile(r"r12, \[rsp - 0x[0-9a-f]+\]")


@dataclass(frozen=True, slots=True)
class GoProbe:
    addr: int         # ELF virtual address (BCC's addr=)
    program: str      # BPF program it runs
    what: str         # for logs: "Write at its stack check", "Read RET"


def stack_check_jump(code: bytes, entry: int, size: int) -> int:
    """The address of the function's stack-check jbe; GoRefused if the function (code = its
    first bytes, at entry) does not begin with a stack check."""
    from agtap.capture import boringssl
    try:
        md, _ = boringssl._capstone()
    except boringssl.Refusal as e:
        raise GoRefused(str(e)) from None
    ins = list(md.disasm_lite(code, entry))[:3]
    seen = "; ".join(f"{m} {o}".strip() for _, _, m, o in ins)
    i = 1 if ins and ins[0][2] == "lea" and LEA_R12.fullmatch(ins[0][3]) else 0
    if len(ins) < i + 2:
        raise GoRefused(f"no stack check at {entry:#x} ({seen or 'undecodable'})")
    (_, _, cmp, cmp_ops), (at, length, jbe, target) = ins[i], ins[i + 1]
    reg = "r12" if i else "rsp"
    if cmp != "cmp" or not STACK_CHECK.fullmatch(cmp_ops) or not cmp_ops.startswith(reg) or jbe != "jbe":
        raise GoRefused(f"no stack check at {entry:#x} ({seen})")
    if not entry < int(target, 16) < entry + size:
        raise GoRefused(f"the stack check at {entry:#x} jumps out of the function ({seen})")
    return at


def plan(path: str, loc: GoTlsLocation) -> list[GoProbe]:
    """Every probe of one Go executable: RETs first (no entry is then seen whose return is not)."""
    rets, entries = [], []
    for key, f in loc.functions.items():
        enter, ret = PROGRAMS[key]
        name = key.capitalize()
        try:
            addr = stack_check_jump(code_at(path, f.entry, 32), f.entry, f.size)
        except GoRefused as e:
            raise GoRefused(f"{name}: {e.reason}") from None
        entries.append(GoProbe(addr, enter, f"{name} at its stack check"))
        if ret:
            rets += [GoProbe(a, ret, f"{name} RET") for a in f.rets]
    return rets + entries
