"""Creating the files a root daemon writes, without being tricked into writing somewhere else.

agtap runs as root and writes prompts under /var/log/agtap, /var/lib/agtap and
/run/agtap (or wherever AGTAP_LOG points). A local user who could plant a
symlink or own a directory on that path could make root append to any file,
or read prompts. So:

- a directory agtap uses must be a real directory (not a symlink) owned by
  the user agtap runs as (root), not writable by others unless sticky; one
  agtap creates is made 0750 root:agtap (existing ones are left as they are);
- no directory above it may be writable by another user unless it is sticky
  (like /tmp), and a symlink above it must be root's (like /var/run -> /run);
- files are opened with O_NOFOLLOW and checked after opening (regular file,
  our owner, one link), then set to 0640 root:agtap.

Anything unsafe raises UnsafePathError naming the path. `FailureLog` is the
shared "count it, log it at most once a minute" policy of the file sinks.
"""

from __future__ import annotations

import errno
import grp
import logging
import os
import stat
import time

from agtap import busnames

DIR_MODE = 0o750
FILE_MODE = 0o640
GROUP = busnames.GROUP   # owner group of every file agtap writes


class UnsafePathError(OSError):
    """A path agtap was asked to write is not safe for a root process (symlink, foreign owner...)."""

    def __init__(self, path: str, why: str):
        super().__init__(errno.EPERM, f"refusing unsafe path {path}: {why}", path)
        self.path = path
        self.why = why


_GIDS: dict[str, int] = {}
_MISSING: dict[str, tuple[tuple[int, int], float]] = {}   # group -> (/etc/group's (inode, mtime), when looked up)
MISSING_RECHECK_S = 60.0


def _group_file_key() -> tuple[int, int]:
    try:
        st = os.stat("/etc/group")
        return st.st_ino, st.st_mtime_ns
    except OSError:
        return 0, 0


def group_id(group: str | None) -> int:
    """gid of `group`, or -1 (leave the group alone) when it does not exist.

    A gid found is kept: getgrnam reads /etc/group, and the bodies sink asks once per file.
    A group not found is remembered too, until /etc/group changes (the package's postinst,
    or an admin, runs groupadd while agtap runs) or a minute passes (a group from another
    NSS source): so a host without the group costs one stat per file, not a read of /etc/group."""
    if not group:
        return -1
    if group in _GIDS:
        return _GIDS[group]
    key = _group_file_key()
    missing = _MISSING.get(group)
    if missing and missing[0] == key and time.monotonic() - missing[1] < MISSING_RECHECK_S:
        return -1
    try:
        gid = _GIDS[group] = grp.getgrnam(group).gr_gid
        _MISSING.pop(group, None)
        return gid
    except KeyError:
        _MISSING[group] = (key, time.monotonic())
        return -1


def _set_owner(path_or_fd: str | int, gid: int) -> None:
    # Root makes it root:<group>; another user can only set a group it belongs to.
    uid = 0 if os.geteuid() == 0 else -1
    if gid == -1 and uid == -1:
        return
    try:
        if isinstance(path_or_fd, int):
            os.fchown(path_or_fd, uid, gid)
        else:
            os.chown(path_or_fd, uid, gid, follow_symlinks=False)
    except PermissionError:
        pass


def _check_ancestors(path: str) -> None:
    """Every directory above `path` must be ours/root's, or sticky; symlinks there must be root's."""
    me = os.geteuid()
    parts = os.path.abspath(path).split(os.sep)[1:-1]
    current = "/"
    for part in parts:
        current = os.path.join(current, part)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            return  # the rest will be created by us
        if st.st_uid not in (0, me):
            raise UnsafePathError(current, f"owned by uid {st.st_uid}, not root")
        if stat.S_ISLNK(st.st_mode):
            continue  # root's own symlink (e.g. /var/run); the target is checked as we go on
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafePathError(current, "not a directory")
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            raise UnsafePathError(current, f"writable by others (mode {stat.S_IMODE(st.st_mode):o}) and not sticky")


def _check_own_dir(path: str, st: os.stat_result) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(path, "is a symlink")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(path, "exists and is not a directory")
    if st.st_uid != os.geteuid():
        raise UnsafePathError(path, f"owned by uid {st.st_uid}, not uid {os.geteuid()}")
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        raise UnsafePathError(path, f"writable by others (mode {stat.S_IMODE(st.st_mode):o}) and not sticky")


def ensure_dir(path: str, mode: int = DIR_MODE, group: str | None = GROUP) -> str:
    """Make sure `path` is a safe directory, creating it and missing parents as `mode`, root:`group`.

    A directory that already exists is checked but not changed: AGTAP_LOG may
    point into /var/log itself, whose mode is not agtap's to tighten. The
    service's own directories come from systemd (LogsDirectory= ...) or from
    here, with the right mode either way.
    """
    path = os.path.abspath(path)
    _check_ancestors(path)
    parent = os.path.dirname(path)
    if parent != path and not os.path.isdir(parent):
        ensure_dir(parent, mode, group)
    try:
        os.mkdir(path, mode)
        created = True
    except FileExistsError:
        created = False
    st = os.lstat(path)
    _check_own_dir(path, st)
    if created:
        if stat.S_IMODE(st.st_mode) != mode:
            os.chmod(path, mode)  # mkdir's mode went through the umask; checked above: ours, not a symlink
        _set_owner(path, group_id(group))
    return path


def _check_open_file(path: str, fd: int) -> os.stat_result:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePathError(path, "not a regular file")
    if st.st_uid != os.geteuid():
        raise UnsafePathError(path, f"owned by uid {st.st_uid}, not uid {os.geteuid()}")
    if st.st_nlink > 1:
        raise UnsafePathError(path, f"has {st.st_nlink} hard links")
    return st


def open_file(path: str, flags: int, mode: int = FILE_MODE, group: str | None = GROUP,
              parent_checked: bool = False) -> int:
    """os.open that never follows a symlink at `path` and checks what it opened; the parent must be safe.

    parent_checked: the caller has made sure of the parent with ensure_dir already (the
    bodies sink, once per day directory), so it is not walked again for every file.
    """
    if not parent_checked:
        ensure_dir(os.path.dirname(os.path.abspath(path)), DIR_MODE, group)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UnsafePathError(path, "is a symlink") from None
        raise
    try:
        st = _check_open_file(path, fd)
        os.set_blocking(fd, True)
        if stat.S_IMODE(st.st_mode) != mode:
            os.fchmod(fd, mode)
        gid = group_id(group)
        if gid != -1 and st.st_gid != gid:
            _set_owner(fd, gid)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_append(path: str, mode: int = FILE_MODE, group: str | None = GROUP) -> int:
    """An O_APPEND write fd on `path`, created `mode` and root:`group`; refuses symlinks and foreign files."""
    return open_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode, group)


class FailureLog:
    """Counts failures and logs at most one message per `interval` seconds (with how many were not logged)."""

    def __init__(self, logger: logging.Logger, what: str, interval: float = 60.0):
        self.logger = logger
        self.what = what
        self.interval = interval
        self.count = 0
        self._last = float("-inf")
        self._unlogged = 0

    def failed(self, err: BaseException) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self._last < self.interval:
            self._unlogged += 1
            return
        more = f" ({self._unlogged} more since last report)" if self._unlogged else ""
        self.logger.warning("%s failed: %s%s", self.what, err, more)
        self._last = now
        self._unlogged = 0
