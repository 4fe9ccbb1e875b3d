"""Where a BoringSSL connection ends, in an executable without symbols: SSL*'s destructor.

BoringSSL's `SSL_free(ssl)` is `Delete(ssl)`: `ssl_st::~ssl_st()` then the memory is
freed. SSL_free itself reports no error, and with link-time optimisation it is inlined
into its callers (Bun 1.4.5 has 30 inlined copies), so it is no probe point. The
destructor is: every copy calls it, with the SSL* as its only argument, and it does
what no other function does to an SSL*:

    if (method != nullptr) method->ssl_free(this);     // ssl_lib.cc, ~ssl_st

`method` is the SSL's first field and `ssl_free` the third slot of SSL_PROTOCOL_METHOD
(after `bool is_dtls` and `ssl_new`), so the code is `mov (%S),%M ... mov %S,%rdi;
call *0x10(%M)` with S holding the function's first argument.

The destructor is found from SSL_new, the one ssl_lib.cc function whose only error is
SSL_R_NULL_SSL_CTX: SSL_new owns the new SSL in a UniquePtr whose deleter is SSL_free,
so its failure paths call the destructor directly. Among SSL_new's direct callees
exactly one must have the shape above and begin with a `push` (the kernel emulates it);
anything else is `NotLocated`, and the connection then ends for agtap when its process
exits, as before.
"""

from __future__ import annotations

from agtap.capture.x86code import disasm

R_NULL_SSL_CTX = 185          # SSL_R_NULL_SSL_CTX, SSL_new's only OPENSSL_PUT_ERROR
METHOD_SSL_FREE = 0x10        # offsetof(SSL_PROTOCOL_METHOD, ssl_free)
LOOKBACK = 4                  # instructions before `call *0x10(%M)` that load M and rdi


class NotLocated(Exception):
    """The destructor was not found with certainty: why."""


def locate(text, base: int, reasons: dict[int, set[int]], starts, md, x86) -> tuple[int, str]:
    """(address of ssl_st::~ssl_st, one line saying how) in the code `text` mapped at `base`;
    reasons: function address -> the ssl_lib.cc error reasons it reports;
    starts: sorted offsets in `text` of every direct call's target."""
    news = [f for f, r in reasons.items() if r == {R_NULL_SSL_CTX}]
    if len(news) != 1:
        raise NotLocated(f"{len(news)} functions report only SSL_new's error (NULL_SSL_CTX); want 1")
    new = news[0]
    callees = sorted({int(i.op_str, 16) for i in disasm(text, base, new, starts, md)
                      if i.id == x86.X86_INS_CALL and i.op_str.startswith("0x")})
    found = [c for c in callees
             if base <= c < base + len(text) and frees_through_method(disasm(text, base, c, starts, md), x86)]
    if len(found) != 1:
        raise NotLocated(f"{len(found)} functions called by SSL_new at {new:#x} call method->ssl_free "
                         "on their argument; want 1")
    dtor = found[0]
    first = disasm(text, base, dtor, starts, md)[0]
    if first.id != x86.X86_INS_PUSH:
        raise NotLocated(f"the SSL destructor at {dtor:#x} begins with `{first.mnemonic} {first.op_str}`, "
                         "not a push: the kernel would single-step it")
    return dtor, f"SSL destructor at {dtor:#x} (called by SSL_new at {new:#x}, calls method->ssl_free)"


def frees_through_method(ins: list, x86) -> bool:
    """Whether the function calls `(*(this))->ssl_free(this)`: `call *0x10(%M)` where, within
    LOOKBACK instructions before it, M was loaded from (%S) and rdi set from S, S being a
    register the function copied its first argument into before its first call."""
    this = {x86.X86_REG_RDI}
    for i in ins:
        if i.group(x86.X86_GRP_CALL) or i.group(x86.X86_GRP_JUMP) or i.group(x86.X86_GRP_RET):
            break
        ops = i.operands
        if i.id == x86.X86_INS_MOV and len(ops) == 2 and ops[0].type == ops[1].type == x86.X86_OP_REG \
                and ops[1].reg in this:
            this.add(ops[0].reg)
    saved = this - {x86.X86_REG_RDI}
    for n, i in enumerate(ins):
        ops = i.operands
        if i.id != x86.X86_INS_CALL or len(ops) != 1 or ops[0].type != x86.X86_OP_MEM:
            continue
        mem = ops[0].mem
        if mem.disp != METHOD_SSL_FREE or mem.index != 0 or mem.base == 0:
            continue
        before = ins[max(0, n - LOOKBACK):n]
        arg = next((p.operands[1].reg for p in reversed(before) if _mov_reg(p, x86, x86.X86_REG_RDI)), None)
        if arg not in saved:
            continue
        if any(_load_from(p, x86, mem.base, arg) for p in before):
            return True
    return False


def _mov_reg(i, x86, dst: int) -> bool:
    ops = i.operands
    return (i.id == x86.X86_INS_MOV and len(ops) == 2 and ops[0].type == ops[1].type == x86.X86_OP_REG
            and ops[0].reg == dst)


def _load_from(i, x86, dst: int, src: int) -> bool:
    """`mov (%src),%dst`: a 64-bit load at offset 0."""
    ops = i.operands
    return (i.id == x86.X86_INS_MOV and len(ops) == 2 and ops[0].type == x86.X86_OP_REG
            and ops[0].reg == dst and ops[1].type == x86.X86_OP_MEM and ops[1].mem.base == src
            and ops[1].mem.disp == 0 and ops[1].mem.index == 0 and ops[1].size == 8)
