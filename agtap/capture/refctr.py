"""The reference counter ("semaphore") offset the kernel holds at a uprobe point, learned, never guessed.

A uprobe may name a reference counter: a 16-bit value at some offset of the probed file
that the kernel adds 1 to in every process it writes the breakpoint into (USDT
semaphores). The kernel keeps ONE uprobe per probe point (inode, file offset), with one
counter offset, and refuses (EINVAL) every other registration there with another one,
writing a line to its log:

    ref_ctr_offset mismatch. inode: 0x52fbc offset: 0x355a0 ref_ctr_offset(old): 0x6 ref_ctr_offset(new): 0x0

agtap asks for none (0). BCC 0.26's Python binding asks for garbage: it declares six
arguments for libbcc's bpf_attach_uprobe, which takes seven, and the seventh is whatever
the stack holds (6 here). A point held by such a tracer, or leaked by the kernel ("failed
to unregister, leaking uprobe": held until reboot), then refuses agtap's probes. Asking
with the same offset works, and shares the kernel's uprobe: `held_offset` learns it from
what the kernel says, in this order:

  - tracefs: uprobe_events lists every tracefs uprobe event with its counter offset; the
    kernel refuses a new event whose offset differs from another event's at the same
    point (trace_uprobe: "Reference counter offset mismatch.", which names no point);
  - its log (syslog(2), as `dmesg` reads it; root, CAP_SYSLOG): the newest mismatch line
    for the point's inode and offset with the offset just tried, which the refused
    registration wrote synchronously before it returned (so reading after the failure is
    no race; matching inode, offset and the tried value keeps other points' lines out).

If neither says, the point is refused (the caller logs why). An offset inside a writable
segment of the file is refused too: the kernel would add to a 16-bit value in the data
of every process probed; outside one (6 is in the ELF header) it writes nothing.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import struct

from agtap.capture import elfsyms, perfevent

MISMATCH = re.compile(r"ref_ctr_offset mismatch\. inode: 0x([0-9a-f]+) offset: 0x([0-9a-f]+) "
                      r"ref_ctr_offset\(old\): 0x([0-9a-f]+) ref_ctr_offset\(new\): 0x([0-9a-f]+)")
# "p:GROUP/EVENT PATH:0xOFFSET" and "(0xREF)" when a counter is set (kernel/trace/trace_uprobe.c's show)
EVENT = re.compile(r"^([pr]):([^/\s]+)/(\S+) (\S+):0x([0-9a-f]+)(?:\(0x([0-9a-f]+)\))?")
BCC_EVENT = re.compile(r"_bcc_(\d+)$")   # libbcc's uprobe event names end in its process's pid
SYSLOG_ACTION_READ_ALL, SYSLOG_ACTION_SIZE_BUFFER = 3, 10
PF_W = 2


class Unlearned(Exception):
    """The kernel refused the point and does not say (or agtap cannot read) which offset it holds."""


def parse_log(lines, inode: int, offset: int, tried: int) -> int | None:
    """The counter offset the newest mismatch line of (inode, offset) says is held, for a
    registration that asked for `tried`; None if no line says."""
    held = None
    for line in lines:
        m = MISMATCH.search(line)
        if m and int(m.group(1), 16) == inode and int(m.group(2), 16) == offset and int(m.group(4), 16) == tried:
            held = int(m.group(3), 16)
    return held


def kernel_log() -> list[str]:
    """The kernel's log buffer, as `dmesg` reads it (OSError without CAP_SYSLOG under dmesg_restrict)."""
    libc = ctypes.CDLL(None, use_errno=True)
    size = libc.klogctl(SYSLOG_ACTION_SIZE_BUFFER, None, 0)
    if size > 0:
        buf = ctypes.create_string_buffer(size)
        n = libc.klogctl(SYSLOG_ACTION_READ_ALL, buf, size)
        if n >= 0:
            return buf.raw[:n].decode(errors="replace").splitlines()
    e = ctypes.get_errno()
    raise OSError(e, f"cannot read the kernel log: {os.strerror(e)}")


def parse_events(text: str) -> list[tuple[str, str, str, int, int]]:
    """uprobe_events -> (group, event, path, file offset, counter offset) per event."""
    out = []
    for line in text.splitlines():
        m = EVENT.match(line)
        if m:
            out.append((m.group(2), m.group(3), m.group(4), int(m.group(5), 16), int(m.group(6) or "0", 16)))
    return out


def events_at(tracefs: str, path: str, offset: int) -> list[tuple[str, str, int]]:
    """The tracefs uprobe events at the probe point (path's inode, offset): (group, event, counter offset)."""
    st = os.stat(path)
    try:
        with open(os.path.join(tracefs, "uprobe_events")) as f:
            text = f.read()
    except OSError:
        return []
    out = []
    for group, event, epath, eoff, ref in parse_events(text):
        if eoff != offset:
            continue
        try:
            est = os.stat(epath)
        except OSError:
            continue   # a file since removed, or in a mount namespace gone: not this point
        if (est.st_dev, est.st_ino) == (st.st_dev, st.st_ino):
            out.append((group, event, ref))
    return out


def orphaned(group: str, event: str, proc: str = "/proc") -> bool:
    """An event libbcc made for a process that runs no more (or whose pid now runs a program
    without libbcc): libbcc leaves one behind when an attach fails after making it, and when
    its process is killed. Nobody can use it again."""
    m = BCC_EVENT.search(event)
    if group != "uprobes" or m is None:
        return False
    try:
        with open(f"{proc}/{m.group(1)}/maps") as f:
            return not any("libbcc" in line for line in f)
    except FileNotFoundError:
        return True
    except OSError:
        return False   # cannot tell: kept


def writes_data(path: str, ref: int) -> bool:
    """Would the kernel, counting at file offset `ref`, write into a writable segment of `path`
    (the pages a process maps writable)? True also when the file cannot be read."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
                return True
            phoff, = struct.unpack_from("<Q", head, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except (OSError, struct.error):
        return True
    for i in range(phnum):
        p_type, flags, p_offset, _vaddr, _paddr, p_filesz = struct.unpack_from("<IIQQQQ", table, i * phentsize)
        if p_type == elfsyms.PT_LOAD and flags & PF_W and p_offset & ~0xFFF <= ref < (p_offset + p_filesz + 0xFFF) & ~0xFFF:
            return True
    return False


def held_offset(path: str, offset: int, tried: int, tracefs: str, *, created: bool) -> int:
    """The counter offset the kernel holds at (path, offset), which refused `tried` (EINVAL).
    created=False: tracefs refused the event itself (another event there has another offset);
    True: the event was made and registering it was refused (the uprobe is held). Raises
    Unlearned with the reason when it cannot be learned or must not be used."""
    if not created:
        refs = {ref for _, _, ref in events_at(tracefs, path, offset)} - {tried}
        if len(refs) != 1:
            raise Unlearned(f"tracefs events at {offset:#x} of {path} have counter offsets "
                            f"{', '.join(hex(r) for r in sorted(refs)) or '(none other)'}")
        held = refs.pop()
    else:
        try:
            log = kernel_log()
        except OSError as e:
            raise Unlearned(f"{e.strerror} (agtap reads the held offset there: root, CAP_SYSLOG)") from None
        held = parse_log(log, os.stat(path).st_ino, offset, tried)
        if held is None:
            raise Unlearned("the kernel log has no 'ref_ctr_offset mismatch' line for it")
    if held and writes_data(path, held):
        raise Unlearned(f"the held counter offset {held:#x} lies in writable data of the file: the kernel "
                        "would add to a value there in every process probed")
    return held


def test_register(path: str, offset: int, serial: int) -> int:
    """For `agtap doctor`: is the probe point (path, file offset) held with a counter offset?
    Registers a uprobe there with none, for this process only, and unregisters it at once
    (nothing stays registered): 0 when the kernel takes it, else the offset it holds (raises
    Unlearned when that cannot be learned). `serial` names the tracefs event: an agtap
    event ("p<pid>_<n>"), so a killed doctor's is removed by the next agtap start."""
    name = f"p{os.getpid()}_{serial}"
    tracefs = perfevent.tracefs()
    try:
        event_id = perfevent.create_event(name, path, offset, False)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        return held_offset(path, offset, 0, tracefs, created=False)
    try:
        fd = perfevent.open_event(event_id, os.getpid(), inherit=False)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        return held_offset(path, offset, 0, tracefs, created=True)
    else:
        os.close(fd)
        return 0
    finally:
        perfevent.remove_event(name)
