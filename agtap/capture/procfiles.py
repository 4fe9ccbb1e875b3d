"""A process's view of its files: what its maps lines name, and how agtap opens them.

A container's libssl is another file at the path the host's has: agtap names a mapped
file by the (device, inode) its maps line shows and opens it through the process's own
view - the host path when it is that very file, else /proc/PID/root/<path>, else
/proc/PID/map_files/<range> (a file deleted and replaced since it was mapped). On overlayfs
(Docker, Podman) the path's inode is the overlay's, one per container, while a uprobe lands
on the layer's file, shared by every container of the image: that file's key comes from the
layers named in /proc/PID/mountinfo.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from agtap.capture.procinfo import read_process

DELETED = " (deleted)"

Key = tuple[int, int]   # (st_dev, st_ino)


@dataclass(frozen=True, slots=True)
class Mapping:
    """One file mapped by a process, as its /proc/PID/maps line says."""
    path: str         # as the kernel prints it for us (without " (deleted)")
    key: Key          # the maps line's device and inode
    span: str         # "start-end": its entry in /proc/PID/map_files
    deleted: bool


def parse_maps_line(line: str) -> Mapping | None:
    """A file-backed mapping from one maps line; None for anonymous or special ones."""
    p = line.rstrip("\n").split(None, 5)
    if len(p) != 6 or not p[5].startswith("/"):
        return None
    try:
        major, minor = (int(x, 16) for x in p[3].split(":"))
        ino = int(p[4])
    except ValueError:
        return None
    if ino == 0:
        return None
    path, deleted = p[5], p[5].endswith(DELETED)
    if deleted:
        path = path[:-len(DELETED)]
    return Mapping(path, (os.makedev(major, minor), ino), p[0], deleted)


def key_of(path: str) -> Key | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


_libc = None


def mapped_key(path: str) -> Key | None:
    """The (dev, inode) a maps line shows for `path` once mapped - the inode a uprobe lands
    on. On overlayfs it is the layer's file, not what stat() of the overlay path says (two
    containers of one image: two overlay inodes, one file). Found by mapping one page of it
    here and asking /proc/self/map_files (root only); None if that cannot be done."""
    global _libc
    import ctypes
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.mmap.restype = ctypes.c_void_p
        _libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                               ctypes.c_long)
        _libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    page = os.sysconf("SC_PAGE_SIZE")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        addr = _libc.mmap(None, page, 1, 2, fd, 0)   # PROT_READ, MAP_PRIVATE
        if addr in (None, ctypes.c_void_p(-1).value):
            return None
        try:
            return key_of(f"/proc/self/map_files/{addr:x}-{addr + page:x}")
        finally:
            _libc.munmap(addr, page)
    finally:
        os.close(fd)


def overlay_layers(pid: int, proc_root: str = "/proc") -> list[str]:
    """The layer directories (upper first) of the process's root if it is an overlayfs mount
    (Docker, Podman, containerd), as paths in agtap's view; [] otherwise."""
    layers: list[str] = []
    try:
        with open(f"{proc_root}/{pid}/mountinfo") as f:
            for line in f:
                fields, _, rest = line.partition(" - ")
                f5 = fields.split()
                if len(f5) < 5 or f5[4] != "/":
                    continue
                fstype, _src, opts = (rest.split() + ["", "", ""])[:3]
                layers = []   # the last mount on / is the root
                if fstype != "overlay":
                    continue
                upper, lower = [], []
                for opt in opts.split(","):
                    name, _, value = opt.partition("=")
                    if name == "upperdir":
                        upper = [value]
                    elif name == "lowerdir":
                        lower += value.split(":")
                    elif name == "lowerdir+":
                        lower.append(value)
                layers = [d.replace("\\040", " ") for d in upper + lower]
    except OSError:
        return []
    return layers


def layer_key(layers: list[str], path: str) -> Key | None:
    """The (dev, inode) of the layer file an overlay path stands for: the inode a uprobe
    attached by that path lands on. Two containers of one image have two overlay inodes
    (another st_dev each, in stat() and on maps lines) for this one file."""
    for layer in layers:
        p = layer + path
        try:
            st = os.lstat(p)
        except OSError:
            continue
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            return None   # a whiteout: deleted in this layer
        return key_of(p)
    return None


def path_keys(path: str, layers: list[str] = (), inside: str = "") -> set[Key]:
    """Every key a file reached by path is known by: its stat, the inode it maps as, and on
    overlayfs (`inside`: the path in the container) the layer file's."""
    keys = {key_of(path), mapped_key(path), layer_key(list(layers), inside) if layers else None}
    return {k for k in keys if k is not None}


def where_of(pid: int, proc_root: str = "/proc") -> str:
    """Whose files a process sees: 'host', or the container / root / mount namespace it runs in."""
    cid = read_process(pid, proc_root).container_id
    if cid:
        return f"container {cid[:12]}"
    try:
        root = os.readlink(f"{proc_root}/{pid}/root")
        if root != "/":
            return f"root {root}"
        mine, theirs = os.stat(f"{proc_root}/self/ns/mnt").st_ino, os.stat(f"{proc_root}/{pid}/ns/mnt").st_ino
        if mine != theirs:
            return f"mount namespace {theirs}"
    except OSError:
        pass
    return "host"


def resolve(pid: int, m: Mapping, proc_root: str = "/proc") -> tuple[str, set[Key]]:
    """A path that opens the very file `pid` maps, and every key it is known by.

    ("", keys) if no path reaches it (the process is gone, or no CAP_SYS_ADMIN for map_files).
    """
    keys = {m.key}
    layers = overlay_layers(pid, proc_root)
    if layers and not m.deleted:
        k = layer_key(layers, m.path)
        if k is not None:
            keys.add(k)
    own = f"{proc_root}/{pid}/root{m.path}"
    if not m.deleted:
        if key_of(m.path) == m.key:
            return m.path, keys
        own_key = key_of(own)
        if own_key == m.key:
            return own, keys
        if own_key is not None:
            keys.add(own_key)   # overlayfs: the path's inode is not the layer's file the maps line names
    by_range = f"{proc_root}/{pid}/map_files/{m.span}"
    k = key_of(by_range)
    if k is None:
        return "", keys
    keys.add(k)
    return by_range, keys
