"""What agtap learns about a process at first sight, and what an fd is.

All of it comes from /proc, read once per process (or per fd) and cached;
entries leave the caches when the process exits.
"""

from __future__ import annotations

import os
import re
import socket
import struct
from dataclasses import dataclass

_CONTAINER_RE = re.compile(r"(?:docker|cri-containerd|crio|libpod|containerd)[-/]([0-9a-f]{64})|/([0-9a-f]{64})(?:\.scope)?$")

_MACHINE_RE = re.compile(r"/machine\.slice/machine-([^/]+)\.scope(?:/|$)")


@dataclass(slots=True)
class ProcessInfo:
    pid: int
    proc: str = ""           # process name: the main thread's comm
    exe: str = ""
    unit: str = ""           # systemd unit, e.g. "my-agent.service"
    container_id: str = ""


def unit_and_container(cgroup_text: str) -> tuple[str, str]:
    """From /proc/PID/cgroup: the innermost systemd unit and a container id if any."""
    path = ""
    for line in cgroup_text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and (parts[0] == "0" or "name=systemd" in parts[1]):
            path = parts[2]
            if parts[0] == "0":
                break
    unit = ""
    for comp in reversed(path.split("/")):
        if comp.endswith((".service", ".scope")) and not comp.startswith("init.scope"):
            unit = comp
            break
    m = _CONTAINER_RE.search(path)
    container = (m.group(1) or m.group(2)) if m else ""
    if not container:
        # systemd-nspawn registered with machined: machine.slice/machine-NAME.scope (name escaped)
        n = _MACHINE_RE.search(path)
        if n:
            container = re.sub(r"\\x([0-9a-f]{2})", lambda e: chr(int(e.group(1), 16)), n.group(1))
    return unit, container


def read_process(pid: int, proc_root: str = "/proc") -> ProcessInfo:
    info = ProcessInfo(pid)
    base = f"{proc_root}/{pid}"
    try:
        with open(f"{base}/comm", "rb") as f:
            info.proc = f.read().strip().decode("utf-8", "replace")
    except OSError:
        pass
    try:
        info.exe = os.readlink(f"{base}/exe")
    except OSError:
        pass
    try:
        with open(f"{base}/cgroup") as f:
            info.unit, info.container_id = unit_and_container(f.read())
    except OSError:
        pass
    return info


def fd_target(pid: int, fd: int, proc_root: str = "/proc") -> str:
    """readlink of /proc/PID/fd/N: 'socket:[123]', 'pipe:[456]', a path, or '' if gone."""
    try:
        return os.readlink(f"{proc_root}/{pid}/fd/{fd}")
    except OSError:
        return ""


def inode_of(target: str) -> int:
    """The inode in 'socket:[123]' / 'pipe:[456]'; 0 for anything else."""
    if target.endswith("]") and "[" in target:
        try:
            return int(target[target.index("[") + 1:-1])
        except ValueError:
            return 0
    return 0


_SOCK_DIAG_BY_FAMILY = 20
_UDIAG_SHOW_PEER = 0x4
_UNIX_DIAG_PEER = 2


def unix_peer(ino: int) -> int | None:
    """The peer inode of a connected unix socket (sock_diag); None if not a unix socket."""
    try:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 4)  # NETLINK_SOCK_DIAG
    except OSError:
        return None
    try:
        req = struct.pack("=BBHIII2I", socket.AF_UNIX, 0, 0, 0xFFFFFFFF, ino, _UDIAG_SHOW_PEER,
                          0xFFFFFFFF, 0xFFFFFFFF)
        hdr = struct.pack("=IHHII", 16 + len(req), _SOCK_DIAG_BY_FAMILY, 1, 1, 0)
        s.settimeout(0.5)
        s.sendto(hdr + req, (0, 0))
        data = s.recv(8192)
    except OSError:
        return None
    finally:
        s.close()
    if len(data) < 16 + 16:
        return None
    mlen, mtype = struct.unpack_from("=IH", data, 0)
    if mtype != _SOCK_DIAG_BY_FAMILY:
        return None   # NLMSG_ERROR: not a unix socket (or gone)
    off = 16 + 16
    while off + 4 <= min(mlen, len(data)):
        alen, atype = struct.unpack_from("=HH", data, off)
        if alen < 4:
            break
        if atype == _UNIX_DIAG_PEER and alen >= 8:
            return struct.unpack_from("=I", data, off + 4)[0]
        off += (alen + 3) & ~3
    return 0   # a unix socket without a peer


def children(pid: int, proc_root: str = "/proc") -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"{proc_root}/{pid}/task"):
            try:
                with open(f"{proc_root}/{pid}/task/{tid}/children") as f:
                    out += [int(x) for x in f.read().split()]
            except OSError:
                pass
    except OSError:
        pass
    return out


def ppid_of(pid: int, proc_root: str = "/proc") -> int:
    try:
        with open(f"{proc_root}/{pid}/stat", "rb") as f:
            stat = f.read()
        return int(stat[stat.rfind(b")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def holds(pid: int, target: str, *, read_end: bool = False, proc_root: str = "/proc") -> bool:
    """Does `pid` have an fd on `target` ('pipe:[N]' / 'socket:[N]'), open for reading if read_end?"""
    base = f"{proc_root}/{pid}/fd"
    try:
        fds = os.listdir(base)
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"{base}/{fd}") != target:
                continue
        except OSError:
            continue
        if not read_end:
            return True
        try:
            with open(f"{proc_root}/{pid}/fdinfo/{fd}") as f:
                for line in f:
                    if line.startswith("flags:"):
                        if int(line.split()[1], 8) & 3 == os.O_RDONLY:
                            return True
                        break
        except (OSError, ValueError, IndexError):
            pass
    return False


def ipc_peer(writer: int, peer_target: str, *, read_end: bool, proc_root: str = "/proc",
             up: int = 5, down: int = 3) -> tuple[int, bool] | None:
    """The process at the other end of a local channel: (pid, is_ancestor_of_writer).

    Looked for among the writer's ancestors, then its descendants (MCP clients
    spawn their servers, sometimes through a wrapper such as npx or uv, which
    hold the same inherited fds but not the read end / the peer socket).
    """
    p, depth = ppid_of(writer, proc_root), 0
    while p > 1 and depth < up:
        if holds(p, peer_target, read_end=read_end, proc_root=proc_root):
            return p, True
        p, depth = ppid_of(p, proc_root), depth + 1
    # going down, the deepest holder is the server: a wrapper (npx, uv run) between
    # client and server holds the same inherited read end
    level, deepest = [writer], None
    for _ in range(down):
        nxt = []
        for q in level:
            for c in children(q, proc_root):
                if holds(c, peer_target, read_end=read_end, proc_root=proc_root):
                    deepest = c
                nxt.append(c)
        level = nxt
    return (deepest, False) if deepest else None


TCP_LISTEN = "0A"     # st column of /proc/net/tcp


def tcp_connections(pid: int, proc_root: str = "/proc") -> int:
    """How many TCP connections (any state but LISTEN) the process holds an fd of: its fds'
    socket inodes, looked up in its network namespace's /proc/PID/net/tcp and tcp6."""
    states: dict[int, str] = {}
    for name in ("tcp", "tcp6"):
        try:
            with open(f"{proc_root}/{pid}/net/{name}") as f:
                next(f, None)                                   # the header line
                for line in f:
                    cols = line.split()
                    if len(cols) > 9 and cols[9].isdigit():
                        states[int(cols[9])] = cols[3]
        except OSError:
            pass
    n = 0
    try:
        fds = os.listdir(f"{proc_root}/{pid}/fd")
    except OSError:
        return 0
    for fd in fds:
        ino = inode_of(fd_target(pid, int(fd), proc_root)) if fd.isdigit() else 0
        if ino and states.get(ino, TCP_LISTEN) != TCP_LISTEN:
            n += 1
    return n
