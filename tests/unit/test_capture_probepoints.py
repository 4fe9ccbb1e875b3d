"""Where the SSL probes go (agtap/capture/probepoints.py): the exported functions, or the
function both forms call when the _ex form is a bare wrapper around it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from agtap.capture.elfsyms import symbol_addrs
from agtap.capture.probepoints import calls, common_callee, plan, wrapper_callee

LIBSSL = os.path.realpath("/usr/lib/x86_64-linux-gnu/libssl.so.3")


def call(at: int, target: int, op: int = 0xE8) -> bytes:
    return bytes([op]) + (target - (at + 5)).to_bytes(4, "little", signed=True)


# Debian libssl3's SSL_read_ex at 0x354c0: sub $0x8,%rsp; call 0x35290; ...
DEBIAN_EX = bytes.fromhex("4883ec08") + call(0x354C4, 0x35290) + bytes.fromhex("31d285c0")
# node's: push %rbp; mov %rsp,%rbp; push %r15 ... (first instruction emulated by the kernel)
NODE_EX = bytes.fromhex("554889e5415741564155415453")


def test_a_bare_wrapper_gives_its_callee():
    assert wrapper_callee(DEBIAN_EX, 0x354C0) == 0x35290
    assert wrapper_callee(bytes.fromhex("f30f1efa") + call(0x1004, 0x2000), 0x1000) == 0x2000   # endbr64 first
    assert wrapper_callee(call(0x1000, 0x800, op=0xE9), 0x1000) == 0x800                       # tail call (jmp)


def test_anything_else_is_not_a_wrapper():
    assert wrapper_callee(NODE_EX, 0x1A6B340) is None
    # an instruction that could change an argument register before the call
    assert wrapper_callee(bytes.fromhex("4889fe") + call(0x1003, 0x2000), 0x1000) is None
    assert wrapper_callee(bytes.fromhex("4883ec08e8"), 0x1000) is None   # truncated


def test_the_plain_form_must_call_the_same_function():
    plain = bytes.fromhex("4883ec18" "31c0" "4889e1") + call(0x35439, 0x35290) + bytes.fromhex("85c0")
    assert calls(plain, 0x35430, 0x35290)
    assert common_callee(DEBIAN_EX, 0x354C0, plain, 0x35430) == 0x35290
    other = bytes.fromhex("4883ec18" "31c0" "4889e1") + call(0x35439, 0x35300)
    assert common_callee(DEBIAN_EX, 0x354C0, other, 0x35430) is None


def test_system_libssl_is_probed_at_the_callees_objdump_shows():
    """Checked against binutils' disassembly, not against this module's own decoding."""
    syms = symbol_addrs(LIBSSL)
    points = {p.covers: p for p in plan(LIBSSL, syms)}
    assert set(points) == {"SSL_write/SSL_write_ex", "SSL_read/SSL_read_ex"}, points
    assert shutil.which("objdump"), "binutils is in setup/apt.txt"
    for covers, p in points.items():
        ex = covers.split("/")[1]
        a = syms[ex]
        asm = subprocess.run(["objdump", "-d", f"--start-address={a:#x}", f"--stop-address={a + 16:#x}", LIBSSL],
                             capture_output=True, text=True, check=True).stdout
        targets = [int(t, 16) for t in re.findall(r"\tcall\s+([0-9a-f]+)", asm)]
        assert targets == [p.addr], (covers, asm)
        assert not p.exported and p.enter.endswith("_ex_enter") and p.ret.endswith("_ex_return")


def test_node_keeps_the_exported_functions():
    node = os.path.realpath(shutil.which("node"))
    syms = symbol_addrs(node)
    points = plan(node, syms)
    assert sorted(p.covers for p in points) == ["SSL_read", "SSL_read_ex", "SSL_write", "SSL_write_ex"]
    assert all(p.exported and p.addr == syms[p.covers] for p in points)
