"""Where a Go program's crypto/tls probes go (agtap/capture/goprobes.py): on each function's
stack-check jump, and Read's RETs, checked on real builds against objdump."""

from __future__ import annotations

import pytest

from agtap.capture import golocate, goprobes
from agtap.capture.elfsyms import code_at
from tests.support.gobuild import go_binary


@pytest.mark.parametrize("stripped", [False, True])
def test_probes_of_a_go_1_19_build(stripped):
    path = str(go_binary("llmclient", stripped=stripped))
    loc = golocate.locate_go_tls(path)
    probes = goprobes.plan(loc)
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
