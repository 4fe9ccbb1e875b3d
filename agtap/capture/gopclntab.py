"""Go's function table (`.gopclntab`): where each function of a Go executable begins.

The runtime needs it for stack traces and stack growth, so it is in every Go executable,
stripped (`-ldflags="-s -w"`) or not. Layout (Go's runtime/symtab.go, debug/gosym):

  header   magic u32, two zero pads, min instruction size (1 on amd64), pointer size (8),
           then pointer-sized words: nfunc, nfiles, [textStart: 1.18+], offsets (from the
           header) of the function name table, cu table, file table, pc tables, and the
           function table
  functab  nfunc + 1 pairs (entry, _func offset): u32 entry offsets from textStart since
           Go 1.18, absolute pointer-sized addresses in 1.16/1.17; the last entry is the end
           of the last function
  _func    begins with its own entry (the same value again) and its name's offset in the
           function name table (int32)

Magic: 0xfffffffa Go 1.16/1.17, 0xfffffff0 Go 1.18/1.19, 0xfffffff1 Go 1.20 and later.

In a non-PIE ELF the table is the `.gopclntab` section. In a PIE it sits inside
`.data.rel.ro` with no section of its own, so its header is searched for (magic + pads +
1 + 8), and textStart, which the dynamic loader relocates (the file holds 0), is the
addend of the R_X86_64_RELATIVE relocation of that word. Every table is checked whole
before use (numpy, no loop over functions): sorted entries inside the code segment, each
_func repeating its own entry, name offsets inside the name table.
"""

from __future__ import annotations

import struct

from agtap.capture import boringssl

MAGICS = {0xFFFFFFFA: "Go 1.16/1.17", 0xFFFFFFF0: "Go 1.18/1.19", 0xFFFFFFF1: "Go 1.20+"}
GO116 = 0xFFFFFFFA
PF_X = 1
SHT_RELA, R_X86_64_RELATIVE = 4, 8
TEXT_START_WORD = 8 + 2 * 8         # offset of textStart in a 1.18+ header


class PclntabError(Exception):
    """The function table is absent, of an unknown layout, or fails a check (one line)."""


class Pclntab:
    """One validated function table. `find(name)` -> (entry, end) virtual addresses."""

    def __init__(self, m, elf: boringssl.Elf, secs, base: int, limit: int, vaddr: int):
        """base: file offset of the header; limit: bytes readable from there; vaddr: its address."""
        import numpy as np
        magic, pad1, pad2, min_lc, ptr_size = struct.unpack_from("<IBBBB", m, base)
        if magic not in MAGICS:
            raise PclntabError(f".gopclntab magic {magic:#010x} is not a layout agtap reads "
                               f"(known: {', '.join(f'{k:#x} {v}' for k, v in MAGICS.items())})")
        self.layout = MAGICS[magic]
        if (pad1, pad2, min_lc, ptr_size) != (0, 0, 1, 8):
            raise PclntabError(f".gopclntab header is not amd64's (pad {pad1},{pad2}, "
                               f"min instruction size {min_lc}, pointer size {ptr_size})")
        words = struct.unpack_from("<8Q", m, base + 8)
        if magic == GO116:   # nfunc, nfiles, funcname, cu, filetab, pctab, pcln
            nfunc, text, funcname, cu, pcln_off, field = words[0], 0, words[2], words[3], words[6], 8
        else:                # nfunc, nfiles, textStart, funcname, cu, filetab, pctab, pcln
            nfunc, text, funcname, cu, pcln_off, field = words[0], words[2], words[3], words[4], words[7], 4
            if text == 0:
                text = _relocated(m, secs, vaddr + TEXT_START_WORD)
        n = 2 * nfunc + 1
        if not 0 < nfunc < 1 << 24 or pcln_off + n * field > limit or not 0 < funcname < cu <= limit:
            raise PclntabError(f".gopclntab function table out of bounds ({nfunc} functions)")
        table = np.frombuffer(m, dtype="<u4" if field == 4 else "<u8", count=n,
                              offset=base + pcln_off).astype(np.int64)
        entries, recs = table[0::2], pcln_off + table[1::2]     # recs: each _func, from the header
        if np.any(np.diff(entries) < 0):
            raise PclntabError(".gopclntab function table is not sorted (misread layout)")
        if recs.min() < 0 or recs.max() + field + 4 > limit:
            raise PclntabError(".gopclntab _func record out of bounds")
        code = [s for s in elf.loads if s.flags & PF_X]
        lo, hi = text + int(entries[0]), text + int(entries[-1])
        if not any(s.vaddr <= lo and hi <= s.vaddr + s.size for s in code):
            raise PclntabError(f".gopclntab functions {lo:#x}..{hi:#x} are not inside the code segment"
                               + (" (PIE text start not found)" if not text and magic != GO116 else ""))
        own, nameoffs = _func_fields(m, base, recs, field)
        if np.any(own != entries[:-1]):
            bad = int(np.flatnonzero(own != entries[:-1])[0])
            raise PclntabError(f".gopclntab: function {bad}'s _func entry {int(own[bad]):#x} "
                               f"disagrees with the function table ({int(entries[bad]):#x})")
        if np.any(nameoffs < 0) or np.any(nameoffs >= cu - funcname):
            raise PclntabError(".gopclntab name offset out of bounds")
        self.m, self.base, self.limit = m, base, limit
        self.text, self.entries, self.nameoffs, self.funcname, self.names_end = text, entries, nameoffs, funcname, cu

    def find(self, name: str, max_size: int) -> tuple[int, int] | None:
        """(entry, end) of the function called `name`, None if there is none."""
        import numpy as np
        want = name.encode() + b"\0"
        lo, hi = self.base + self.funcname, self.base + self.names_end     # the name table only
        starts = [0] if self.m[lo:lo + len(want)] == want else []
        at = lo
        while (at := self.m.find(b"\0" + want, at, hi)) >= 0:
            starts.append(at + 1 - lo)
            at += 1
        hits = np.zeros(len(self.nameoffs), dtype=bool)
        for start in starts:
            hits |= self.nameoffs == start
        idx = np.flatnonzero(hits)
        if len(idx) == 0:
            return None
        if len(idx) > 1:
            raise PclntabError(f".gopclntab has {len(idx)} functions named {name}")
        i = int(idx[0])
        entry, end = self.text + int(self.entries[i]), self.text + int(self.entries[i + 1])
        if not 0 < end - entry <= max_size:
            raise PclntabError(f".gopclntab: {name} would be {end - entry} bytes long")
        return entry, end


def _func_fields(m, base: int, recs, field: int):
    """(own entry, name offset) of every _func record at `recs` (offsets from `base`),
    vectorised: one indexing per field through a 32-bit view (records are 4-aligned), else
    byte by byte."""
    import numpy as np
    count = int(recs.max()) + field + 4
    if base % 4 == 0 and not np.any(recs % 4):
        words = np.frombuffer(m, dtype="<u4", count=count // 4, offset=base)
        i = recs // 4
        own = words[i].astype(np.int64)
        if field == 8:
            own |= words[i + 1].astype(np.int64) << 32
        return own, words[i + field // 4].view(np.int32).astype(np.int64)
    raw = np.frombuffer(m, dtype=np.uint8, count=count, offset=base)

    def gather(at, width):
        out = np.zeros(len(at), dtype=np.uint64)
        for k in range(width):
            out |= raw[at + k].astype(np.uint64) << np.uint64(8 * k)
        return out.astype(np.int64)
    return gather(recs, field), gather(recs + field, 4).astype(np.uint32).view(np.int32).astype(np.int64)


def _relocated(m, secs, vaddr: int) -> int:
    """The value the dynamic loader writes at `vaddr`: the addend of its R_X86_64_RELATIVE
    relocation (0 if there is none)."""
    import numpy as np
    rela = np.dtype([("off", "<u8"), ("info", "<u8"), ("addend", "<i8")])
    for s in secs.values():
        if s.type != SHT_RELA or s.size < rela.itemsize:
            continue
        r = np.frombuffer(m, dtype=rela, count=s.size // rela.itemsize, offset=s.offset)
        hit = np.flatnonzero((r["off"] == vaddr) & ((r["info"] & 0xFFFFFFFF) == R_X86_64_RELATIVE))
        if len(hit) == 1:
            return int(r["addend"][hit[0]])
    return 0


def find_pclntab(m, elf: boringssl.Elf, secs) -> Pclntab:
    """The executable's function table: its section, else (PIE) the one valid header found
    in the non-executable segments. Raises PclntabError saying why not."""
    sec = secs.get(".gopclntab")
    if sec is not None:
        if sec.size < 64:
            raise PclntabError(".gopclntab section too small")
        return Pclntab(m, elf, secs, sec.offset, sec.size, sec.addr)
    found, errors = [], []
    for seg in elf.loads:
        if seg.flags & PF_X:
            continue
        end = seg.offset + seg.size
        for magic in MAGICS:
            needle, at = struct.pack("<IBBBB", magic, 0, 0, 1, 8), seg.offset
            while (at := m.find(needle, at, end)) >= 0:
                if (seg.vaddr + at - seg.offset) % 8 == 0 and end - at >= 64:
                    try:
                        found.append(Pclntab(m, elf, secs, at, end - at, seg.vaddr + at - seg.offset))
                    except (PclntabError, ValueError, IndexError) as e:
                        errors.append(str(e))
                at += 1
    if len(found) == 1:
        return found[0]
    if found:
        raise PclntabError(f"{len(found)} valid-looking function tables and no .gopclntab section")
    raise PclntabError("no .gopclntab section" + (f", and no valid table header ({errors[0]})" if errors else
                                                  ", and no table header in the data"))
