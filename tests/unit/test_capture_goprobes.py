"""Where a Go program's crypto/tls probes go (agtap/capture/goprobes.py): on each function's
stack-check jump, Read's RETs, checked on real builds and refused on anything else."""

from __future__ import annotations

import pytest

from agtap.capture import golocate, goprobes
from agtap.capture.elfsyms import code_at
from tests.support.gobuild import go_binary

ENTRY = 0x5A0000


@pytest.mark.parametrize("stripped", [False, True])
def test_probes_of_a_go_1_19_build(stripped):
    path = str(go_binary("llmclient", stripped=stripped))
    loc = golocate.locate_go_tls(path)
    probes = goprobes.plan(path, loc)
    w, r, c = (loc.functions[k] for k in ("write", "read", "close"))
    # RETs first (every RET of Read, none of Write), then one probe per function
    assert [p.program for p in probes] == ["probe_gotls_read_ret"] * len(r.rets) + \
        ["probe_gotls_write", "probe_gotls_read", "probe_gotls_close"]
    assert [p.addr for p in probes[:len(r.rets)]] == list(r.rets)
    # Go 1.19's Write: lea r12,[rsp-0x68] (5 bytes); cmp r12,[r14+0x10] (4); jbe rel32.
    # Read and Close: cmp rsp,[r14+0x10] (4); jbe rel32. Read off objdump -d.
    assert [p.addr for p in probes[len(r.rets):]] == [w.entry + 9, r.entry + 4, c.entry + 4]
    assert {code_at(path, p.addr, 2) for p in probes[len(r.rets):]} == {b"\x0f\x86"}   # jbe rel32
    assert code_at(path, r.entry, 4) == bytes.fromhex("493b6610")       # cmp 0x10(%r14),%rsp


@pytest.mark.parametrize("code,why", [
    (bytes.fromhex("55 4889e5 4883ec20"), "no stack check"),                       # push rbp; mov rbp,rsp; sub
    (bytes.fromhex("493b6610 0f8600100000"), "jumps out of the function"),         # jbe past its end
    (bytes.fromhex("493b6710 0f8610000000"), "no stack check"),                    # [r15+0x10]: not g's stackguard
    (bytes.fromhex("4d8d6424b8 493b6610 0f8610000000"), "no stack check"),         # lea r12, then cmp rsp
    (b"", "no stack check"),
])
def test_anything_but_a_stack_check_is_refused(code, why):
    with pytest.raises(golocate.GoRefused, match=why):
        goprobes.stack_check_jump(code, ENTRY, 0x100)


def test_both_forms_of_the_stack_check_are_read():
    short = bytes.fromhex("493b6610 0f8610000000 55")                  # cmp rsp,...; jbe +0x10; push rbp
    assert goprobes.stack_check_jump(short, ENTRY, 0x100) == ENTRY + 4
    big = bytes.fromhex("4c8d6424b8 4d3b6610 0f8610000000 55")         # lea r12,[rsp-0x48]; cmp r12,...; jbe
    assert goprobes.stack_check_jump(big, ENTRY, 0x100) == ENTRY + 9
