"""Where in a file to put the SSL probes: the exported functions, or their common callee.

Why: a uprobe whose first instruction the kernel cannot emulate is single-stepped out of
line, a second trap per call. Measured on this project's machine (bench 1, sslcalls): one
SSL_write_ex + SSL_read_ex pair costs 1.6 µs untraced, 23 µs with empty programs on entry
and return of the two, 4.4 µs on their callees. Debian's wrappers begin with `sub $8,%rsp` (stepped);
the callees (OpenSSL's ssl_read_internal / ssl_write_internal) begin with `push` (emulated).

The callee is used only when the code proves it is the same call with the same arguments:
SSL_read_ex is `[endbr64] [sub $imm8,%rsp] call|jmp T` (nothing between entry and the
call touches the four argument registers, so T gets (ssl, buf, num, size_t *count) as
SSL_read_ex did), and SSL_read also calls T. Then one probe on T sees every SSL_read and
SSL_read_ex (T returns > 0 and sets *count on success, as SSL_read_ex does), and the
exported pair is not probed (else each call would be seen twice). Anything else - node's
statically linked OpenSSL begins with `push %rbp`, already emulated - keeps the exported
functions.
"""

from __future__ import annotations

from dataclasses import dataclass

from agtap.capture.elfsyms import code_at

ENDBR64 = b"\xf3\x0f\x1e\xfa"
SUB_RSP_IMM8 = b"\x48\x83\xec"
CALL_REL32, JMP_REL32 = 0xE8, 0xE9
SCAN_PLAIN = 96     # bytes of SSL_read/SSL_write searched for the call to the callee

# (_ex form, plain form, the _ex form's BPF entry and return programs, the plain form's)
DIRECTIONS = (
    ("SSL_write_ex", "SSL_write", "probe_ssl_write_ex_enter", "probe_ssl_write_ex_return",
     "probe_ssl_write_enter", "probe_ssl_write_return"),
    ("SSL_read_ex", "SSL_read", "probe_ssl_read_ex_enter", "probe_ssl_read_ex_return",
     "probe_ssl_read_enter", "probe_ssl_read_return"),
)


@dataclass(frozen=True, slots=True)
class ProbePoint:
    addr: int         # ELF address probed
    enter: str        # BPF program on entry
    ret: str          # BPF program on return
    covers: str       # the exported function(s) whose calls it sees
    exported: bool    # addr is the exported function's own (else their common callee)

    def describe(self) -> str:
        return self.covers if self.exported else f"{self.covers} via their common callee at {self.addr:#x}"


def _rel32(code: bytes, at: int) -> int:
    return int.from_bytes(code[at + 1:at + 5], "little", signed=True)


def wrapper_callee(code: bytes, addr: int) -> int | None:
    """T if the function at addr (code = its first bytes) is `[endbr64] [sub $imm8,%rsp] call|jmp T`."""
    i = 0
    if code[i:i + 4] == ENDBR64:
        i += 4
    if code[i:i + 3] == SUB_RSP_IMM8:
        i += 4
    if len(code) < i + 5 or code[i] not in (CALL_REL32, JMP_REL32):
        return None
    return addr + i + 5 + _rel32(code, i)


def calls(code: bytes, addr: int, target: int) -> bool:
    """Whether `call target` (rel32) appears in code (the first bytes of the function at addr)."""
    return any(code[j] == CALL_REL32 and addr + j + 5 + _rel32(code, j) == target
               for j in range(len(code) - 4))


def common_callee(ex_code: bytes, ex_addr: int, plain_code: bytes, plain_addr: int) -> int | None:
    t = wrapper_callee(ex_code, ex_addr)
    return t if t is not None and calls(plain_code, plain_addr, t) else None


def plan(path: str, symbols: dict[str, int]) -> list[ProbePoint]:
    """The probe points for one file; symbols: name -> ELF address of what it exports."""
    points: list[ProbePoint] = []
    for ex, plain, ex_enter, ex_ret, enter, ret in DIRECTIONS:
        callee = None
        if ex in symbols and plain in symbols:
            callee = common_callee(code_at(path, symbols[ex], 16), symbols[ex],
                                   code_at(path, symbols[plain], SCAN_PLAIN), symbols[plain])
        if callee is not None:
            # the callee has the _ex form's arguments and success test (see ssl.c)
            points.append(ProbePoint(callee, ex_enter, ex_ret, f"{plain}/{ex}", False))
            continue
        if ex in symbols:
            points.append(ProbePoint(symbols[ex], ex_enter, ex_ret, ex, True))
        if plain in symbols:
            points.append(ProbePoint(symbols[plain], enter, ret, plain, True))
    return points


# --- the sentinel of the per-process probe scope (agtap/capture/scope.py) ---
SENTINEL = "SSL_set_connect_state"
SERVER_SENTINEL = "SSL_set_accept_state"
# first instructions the kernel emulates instead of single-stepping: push %reg (with or without REX.B)
PUSH_REG, REX_B = range(0x50, 0x58), 0x41


def emulated_prologue(code: bytes) -> bool:
    """Whether the first instruction is a `push %reg`, which the x86 uprobe code emulates
    (one trap per call; anything else is single-stepped out of line: a second trap)."""
    return bool(code) and (code[0] in PUSH_REG or (len(code) > 1 and code[0] == REX_B and code[1] in PUSH_REG))


def sentinel_point(path: str, symbols: dict[str, int], name: str = SENTINEL) -> tuple[int, bool] | None:
    """(address, emulated) of the function every OpenSSL client connection calls once and a
    server never does (name=SERVER_SENTINEL: the other way round); None if the file does not
    export it (BoringSSL located by its error sites, Go: their processes are watched by
    executable instead)."""
    if name not in symbols:
        return None
    addr = symbols[name]
    return addr, emulated_prologue(code_at(path, addr, 4))
