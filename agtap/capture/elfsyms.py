"""What an ELF file exports of OpenSSL's SSL functions (its .dynsym), and the code at
an address in it, without BCC.

Used by target discovery and by `agtap doctor` (which runs without root), and by
probepoints.py to look at the first instructions of the exported functions.
"""

from __future__ import annotations

import mmap
import re
import struct

SSL_SYMBOLS = ("SSL_write", "SSL_write_ex", "SSL_read", "SSL_read_ex")
OPTIONAL_SYMBOLS = ("SSL_free",)
SHT_DYNSYM = 11
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
    found: dict[str, int] = {}
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            if m[:4] != b"\x7fELF" or m[4] != 2 or m[5] != 1:   # ELF64 little-endian only
                return found
            shoff, = struct.unpack_from("<Q", m, 0x28)
            shentsize, shnum = struct.unpack_from("<HH", m, 0x3A)
            secs = [struct.unpack_from("<IIQQQQIIQQ", m, shoff + i * shentsize) for i in range(shnum)]
            for s in secs:
                if s[1] != SHT_DYNSYM:
                    continue
                off, size, link, entsize = s[4], s[5], s[6], s[9] or 24
                str_off, str_size = secs[link][4], secs[link][5]
                # every offset at which a wanted name (NUL-terminated) starts: the linker may
                # share a string's tail, so a name can start inside a longer one
                names = re.compile(b"(" + b"|".join(re.escape(w.encode()) for w in wanted) + b")\0")
                at = {mo.start() - str_off: mo.group(1).decode()
                      for mo in names.finditer(m, str_off, str_off + str_size)}
                if not at or entsize % 4:
                    continue
                with memoryview(m) as mv, mv[off:off + size - size % entsize] as table, \
                        table.cast("I") as words:
                    st_names = words[::entsize // 4].tolist()
                for idx, name_off in enumerate(st_names):
                    if name_off in at:
                        _, info, _other, shndx, value = struct.unpack_from("<IBBHQ", m, off + idx * entsize)
                        if shndx != 0 and (info & 0xF) == 2:   # defined, a function
                            found[at[name_off]] = value
    except (OSError, ValueError, TypeError, struct.error, IndexError):
        pass
    return found


def code_at(path: str, addr: int, n: int) -> bytes:
    """Up to n bytes of the file's loadable content at virtual address `addr` (b"" if none)."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            if m[:4] != b"\x7fELF" or m[4] != 2:
                return b""
            endian = "<" if m[5] == 1 else ">"
            phoff, = struct.unpack_from(endian + "Q", m, 0x20)
            phentsize, phnum = struct.unpack_from(endian + "HH", m, 0x36)
            for i in range(phnum):
                p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from(
                    endian + "IIQQQQ", m, phoff + i * phentsize)
                if p_type == PT_LOAD and p_vaddr <= addr < p_vaddr + p_filesz:
                    start = p_offset + (addr - p_vaddr)
                    return bytes(m[start:start + min(n, p_vaddr + p_filesz - addr)])
    except (OSError, ValueError, struct.error, IndexError):
        pass
    return b""
