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


@dataclass(slots=True)
class ProcessInfo:
    pid: int
    proc: str = ""           # process name: the main thread's comm
    exe: str = ""
    unit: str = ""           # systemd unit, e.g. "my-agent.service"
    container_id: str = ""
    ppid: int = 0


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
    try:
        with open(f"{base}/stat", "rb") as f:
            stat = f.read()
        info.ppid = int(stat[stat.rfind(b")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
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
