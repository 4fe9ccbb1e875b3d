"""Is a uprobe's breakpoint in a process? The kernel writes int3 (0xcc) at the probed
instruction in the memory of each process the probe is for: /proc/PID/mem shows it, whatever
the tracer says (tests/bpf/test_probe_scope.py, bench/b9_scope.py)."""

from __future__ import annotations

import os
import struct

from agtap.capture.procfiles import parse_maps_line


def file_offset(path: str, addr: int) -> int:
    """The file offset of ELF address `addr` (what a maps line's offset column counts)."""
    with open(path, "rb") as f:
        head = f.read(64)
        phoff, = struct.unpack_from("<Q", head, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    for i in range(phnum):
        p_type, _fl, p_offset, p_vaddr, _pa, p_filesz = struct.unpack_from("<IIQQQQ", table, i * phentsize)
        if p_type == 1 and p_vaddr <= addr < p_vaddr + p_filesz:
            return p_offset + addr - p_vaddr
    raise ValueError(hex(addr))


def first_bytes(pid: int, path: str, addrs: list[int]) -> dict[int, int]:
    """ELF address -> the byte at it in process `pid`'s memory ({} while it does not map `path`)."""
    st = os.stat(path)
    key = (st.st_dev, st.st_ino)
    out = {}
    with open(f"/proc/{pid}/maps") as f:
        maps = [m for m in map(parse_maps_line, f) if m and m.key == key]
    lines = {m.span: m for m in maps}
    with open(f"/proc/{pid}/maps") as f:
        offsets = {ln.split()[0]: int(ln.split()[2], 16) for ln in f if ln.split()[0] in lines}
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for a in addrs:
            off = file_offset(path, a)
            for span, start_off in offsets.items():
                lo, hi = (int(x, 16) for x in span.split("-"))
                if start_off <= off < start_off + hi - lo:
                    mem.seek(lo + off - start_off)
                    out[a] = mem.read(1)[0]
    return out


def breakpoints(pid: int, path: str, addrs: list[int]) -> int:
    """How many of `addrs` (ELF addresses in `path`) carry a breakpoint in process `pid`."""
    try:
        return sum(b == 0xCC for b in first_bytes(pid, path, addrs).values())
    except OSError:
        return 0   # gone
