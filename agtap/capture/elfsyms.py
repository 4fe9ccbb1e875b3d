"""What an ELF file exports of OpenSSL's SSL functions (its .dynsym), and the code at
an address in it, without BCC.

Used by target discovery and by `agtap doctor` (which runs without root), and by
probepoints.py to look at the first instructions of the exported functions.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass

SSL_SYMBOLS = ("SSL_write", "SSL_write_ex", "SSL_read", "SSL_read_ex")
# SSL_free ends a connection; SSL_set_connect_state starts a client one (the sentinel of the
# per-process probe scope, agtap/capture/scope.py)
OPTIONAL_SYMBOLS = ("SSL_free", "SSL_set_connect_state", "SSL_set_accept_state")
SHT_SYMTAB, SHT_DYNSYM = 2, 11
PT_LOAD = 1


def exported(path: str, wanted: tuple[str, ...] = SSL_SYMBOLS + OPTIONAL_SYMBOLS) -> set[str]:
    """The names in `wanted` that `path` defines in its dynamic symbol table."""
    return set(symbol_addrs(path, wanted))


def symbol_addrs(path: str, wanted: tuple[str, ...] = SSL_SYMBOLS + OPTIONAL_SYMBOLS) -> dict[str, int]:
    """name -> address (st_value) of the functions in `wanted` that `path` defines.

    Fast on big binaries (node exports ~10^4 symbols, and this runs on the poll thread when
    a new executable starts): the wanted names are found in .dynstr first, then only the
    symbols whose st_name points at one of them are decoded.
    """
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return {name: value for name, (value, _size) in functions(m, wanted, SHT_DYNSYM).items()}
    except (OSError, ValueError):
        return {}


@dataclass(frozen=True, slots=True)
class Section:
    name: str
    type: int
    addr: int         # virtual address (0 if not loaded)
    offset: int       # in the file
    size: int


def _section_headers(m) -> list[tuple]:
    """The raw section headers (sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size,
    sh_link, sh_info, sh_addralign, sh_entsize) of an ELF64 little-endian file, mmap'd."""
    if m[:4] != b"\x7fELF" or m[4] != 2 or m[5] != 1:   # ELF64 little-endian only
        return []
    shoff, = struct.unpack_from("<Q", m, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", m, 0x3A)
    if not shoff or shentsize < 64:
        return []
    return [struct.unpack_from("<IIQQQQIIQQ", m, shoff + i * shentsize) for i in range(shnum)]


def sections(m) -> dict[str, Section]:
    """The section headers of an ELF64 little-endian file (mmap'd), by name ({} if none)."""
    try:
        raw = _section_headers(m)
        shstrndx, = struct.unpack_from("<H", m, 0x3E)
        if shstrndx >= len(raw):
            return {}
        names_at = raw[shstrndx][4]
        out = {}
        for name, typ, _flags, addr, off, size, *_rest in raw:
            end = m.find(b"\0", names_at + name)
            if end >= 0:
                text = m[names_at + name:end].decode("latin-1")
                out.setdefault(text, Section(text, typ, addr, off, size))
        return out
    except (ValueError, struct.error, IndexError):
        return {}


def functions(m, wanted, table: int = SHT_DYNSYM) -> dict[str, tuple[int, int]]:
    """name -> (st_value, st_size) of the defined functions in `wanted` found in the symbol
    tables of type `table` (SHT_DYNSYM, or SHT_SYMTAB for a program's full symbol table)."""
    found: dict[str, tuple[int, int]] = {}
    try:
        secs = _section_headers(m)
        for s in secs:
            if s[1] != table:
                continue
            off, size, link, entsize = s[4], s[5], s[6], s[9] or 24
            str_off, str_size = secs[link][4], secs[link][5]
            # every offset at which a wanted name (NUL-terminated) starts: the linker may
            # share a string's tail, so a name can start inside a longer one
            at = {}
            for w in wanted:
                needle, i = w.encode() + b"\0", str_off
                while (i := m.find(needle, i, str_off + str_size)) >= 0:
                    at[i - str_off] = w
                    i += 1
            if not at or entsize % 4:
                continue
            with memoryview(m) as mv, mv[off:off + size - size % entsize] as tbl, tbl.cast("I") as words:
                st_names = words[::entsize // 4].tolist()
            for idx, name_off in enumerate(st_names):
                if name_off in at:
                    _, info, _other, shndx, value, st_size = struct.unpack_from(
                        "<IBBHQQ", m, off + idx * entsize)
                    if shndx != 0 and (info & 0xF) == 2:   # defined, a function
                        found[at[name_off]] = (value, st_size)
    except (ValueError, TypeError, struct.error, IndexError):
        pass
    return found


def _load_segment(m, addr: int) -> tuple[int, int, int] | None:
    """(p_offset, p_vaddr, p_filesz) of the PT_LOAD holding virtual address `addr` in an mmap'd ELF64."""
    if m[:4] != b"\x7fELF" or m[4] != 2:
        return None
    endian = "<" if m[5] == 1 else ">"
    phoff, = struct.unpack_from(endian + "Q", m, 0x20)
    phentsize, phnum = struct.unpack_from(endian + "HH", m, 0x36)
    for i in range(phnum):
        p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from(
            endian + "IIQQQQ", m, phoff + i * phentsize)
        if p_type == PT_LOAD and p_vaddr <= addr < p_vaddr + p_filesz:
            return p_offset, p_vaddr, p_filesz
    return None


def code_at(path: str, addr: int, n: int) -> bytes:
    """Up to n bytes of the file's loadable content at virtual address `addr` (b"" if none)."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            seg = _load_segment(m, addr)
            if seg:
                p_offset, p_vaddr, p_filesz = seg
                start = p_offset + (addr - p_vaddr)
                return bytes(m[start:start + min(n, p_vaddr + p_filesz - addr)])
    except (OSError, ValueError, struct.error, IndexError):
        pass
    return b""


def file_offset(path: str, addr: int) -> int | None:
    """The file offset of virtual address `addr` (where a uprobe on it sits), None if not loaded."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            seg = _load_segment(m, addr)
    except (OSError, ValueError, struct.error, IndexError):
        return None
    return seg[0] + addr - seg[1] if seg else None


PT_DYNAMIC, DT_NULL, DT_NEEDED, DT_STRTAB = 2, 0, 1, 5
PT_INTERP, ET_DYN = 3, 3


def is_shared_library(path: str) -> bool:
    """A shared library (ET_DYN without a program interpreter), not an executable (a PIE has one)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
                return False
            e_type, = struct.unpack_from("<H", head, 0x10)
            phoff, = struct.unpack_from("<Q", head, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
            f.seek(phoff)
            ph = f.read(phentsize * phnum)
        return e_type == ET_DYN and not any(struct.unpack_from("<I", ph, i * phentsize)[0] == PT_INTERP
                                            for i in range(len(ph) // phentsize if phentsize else 0))
    except (OSError, struct.error):
        return False


def needed(path: str) -> list[str]:
    """The libraries an ELF executable or library names in its DT_NEEDED entries ([] if none or
    not ELF64 little-endian): what the dynamic linker maps before main() runs."""
    out: list[str] = []
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            if m[:4] != b"\x7fELF" or m[4] != 2 or m[5] != 1:
                return out
            phoff, = struct.unpack_from("<Q", m, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", m, 0x36)
            loads, dyn = [], None
            for i in range(phnum):
                p_type, _fl, p_offset, p_vaddr, _pa, p_filesz = struct.unpack_from("<IIQQQQ", m, phoff + i * phentsize)
                if p_type == PT_LOAD:
                    loads.append((p_vaddr, p_offset, p_filesz))
                elif p_type == PT_DYNAMIC:
                    dyn = (p_offset, p_filesz)
            if dyn is None:
                return out
            names, strtab = [], None
            for off in range(dyn[0], dyn[0] + dyn[1] - 15, 16):
                tag, val = struct.unpack_from("<qQ", m, off)
                if tag == DT_NULL:
                    break
                if tag == DT_NEEDED:
                    names.append(val)
                elif tag == DT_STRTAB:
                    strtab = next((val - va + fo for va, fo, sz in loads if va <= val < va + sz), None)
            if strtab is None:
                return out
            for n in names:
                end = m.find(b"\0", strtab + n, strtab + n + 4096)
                if end > 0:
                    out.append(m[strtab + n:end].decode("utf-8", "replace"))
    except (OSError, ValueError, struct.error, IndexError):
        pass
    return out
