"""Where the uprobes of a Go program's crypto/tls go, and which BPF program each runs.

golocate.py finds (*Conn).Write, Read and Close, every RET of each, and each function's
stack check, the prologue of every Go function that may grow its stack:

    [lea r12, [rsp - N]]   cmp rsp|r12, qword ptr [r14 + 0x10]   jbe <call morestack>

The functions are probed not at their first instruction but on that `jbe` (GoFunc.check).
When the goroutine's stack is too small, the jump goes to runtime.morestack, which copies
the stack and restarts the function from its first instruction: a probe at the entry fires
twice for one call, and Write, copied at entry, would be recorded twice. On the jbe the BPF
program sees the cmp's flags and returns when the jump will be taken (bpf/gotls.c): each
call is seen once, with every argument register as at entry (the check reads RSP, R12 and
R14 only) and RSP unchanged. The kernel also emulates a conditional jump, where it
single-steps the `cmp` at the entry (and Go 1.19's `sub rsp` after the jbe): a single-step
costs ~10 µs on this machine's virtual CPU (bench 1, bare uprobes). Read's RETs are probed
as they are (a RET is single-stepped: unavoidable); Write's are not needed.
"""

from __future__ import annotations

from dataclasses import dataclass

from agtap.capture.golocate import GoRefused, GoTlsLocation

# BPF programs (bpf/gotls.c): function -> (at its stack check, at each of its RETs)
PROGRAMS = {"write": ("probe_gotls_write", None),
            "read": ("probe_gotls_read", "probe_gotls_read_ret"),
            "close": ("probe_gotls_close", None)}


@dataclass(frozen=True, slots=True)
class GoProbe:
    addr: int         # ELF virtual address (BCC's addr=)
    program: str      # BPF program it runs
    what: str         # for logs: "Write at its stack check", "Read RET"


def plan(loc: GoTlsLocation) -> list[GoProbe]:
    """Every probe of one Go executable: RETs first (no entry is then seen whose return is not)."""
    rets, entries = [], []
    for key, f in loc.functions.items():
        enter, ret = PROGRAMS[key]
        name = key.capitalize()
        if not f.check:
            raise GoRefused(f"{name}: its stack check was not found")   # golocate refuses those: never here
        entries.append(GoProbe(f.check, enter, f"{name} at its stack check"))
        if ret:
            rets += [GoProbe(a, ret, f"{name} RET") for a in f.rets]
    return rets + entries
