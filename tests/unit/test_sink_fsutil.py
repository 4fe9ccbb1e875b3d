"""fsutil: root must not be tricked into writing through a planted symlink or into a user's directory."""

import grp
import logging
import os
import stat

import pytest

from agtap.sinks.fsutil import FailureLog, UnsafePathError, ensure_dir, open_append

GROUP = "daemon"  # exists on every Debian system; stands in for "agtap" in tests


def need_root(why="chown to another uid needs root"):
    """Skip on a developer's machine; in CI (which runs as root) a missing root is a failure."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run as root: {why}")
        pytest.skip(why)


def test_ensure_dir_creates_parents_with_mode_and_group(tmp_path):
    d = tmp_path / "a" / "b" / "logs"
    assert ensure_dir(str(d), group=GROUP) == str(d)
    for p in (d, d.parent, d.parent.parent):
        st = os.lstat(p)
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o750
        if os.geteuid() == 0:
            assert (st.st_uid, st.st_gid) == (0, grp.getgrnam(GROUP).gr_gid)


def test_existing_dir_is_left_as_it_is(tmp_path):
    d = tmp_path / "var-log"
    d.mkdir()
    os.chmod(d, 0o755)
    ensure_dir(str(d), group=GROUP)
    st = os.stat(d)
    assert stat.S_IMODE(st.st_mode) == 0o755 and st.st_gid == os.getegid()


def test_existing_dir_writable_by_others_is_refused(tmp_path):
    d = tmp_path / "loose"
    d.mkdir()
    os.chmod(d, 0o777)
    with pytest.raises(UnsafePathError, match="writable by others"):
        ensure_dir(str(d))
    os.chmod(d, 0o1777)  # sticky, like /tmp: others cannot replace what we create there
    ensure_dir(str(d))


def test_missing_group_leaves_group_alone(tmp_path):
    f = tmp_path / "x" / "events.jsonl"
    fd = open_append(str(f), group="agtap-no-such-group-xyz")
    os.close(fd)
    assert os.stat(f).st_gid == os.getegid()


def test_open_append_creates_0640_and_appends(tmp_path):
    f = tmp_path / "log" / "events.jsonl"
    for text in (b"one\n", b"two\n"):
        fd = open_append(str(f), group=GROUP)
        os.write(fd, text)
        os.close(fd)
    assert f.read_bytes() == b"one\ntwo\n"
    st = os.stat(f)
    assert stat.S_IMODE(st.st_mode) == 0o640
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (0, grp.getgrnam(GROUP).gr_gid)


def test_symlink_at_the_log_path_is_refused_and_target_untouched(tmp_path):
    target = tmp_path / "victim"
    target.write_bytes(b"precious\n")
    os.chmod(target, 0o600)
    logdir = tmp_path / "log"
    logdir.mkdir()
    (logdir / "events.jsonl").symlink_to(target)
    with pytest.raises(UnsafePathError) as e:
        open_append(str(logdir / "events.jsonl"))
    assert str(logdir / "events.jsonl") in str(e.value) and "symlink" in str(e.value)
    assert target.read_bytes() == b"precious\n"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600


def test_symlink_at_the_directory_is_refused(tmp_path):
    real = tmp_path / "elsewhere"
    real.mkdir()
    (tmp_path / "log").symlink_to(real)
    with pytest.raises(UnsafePathError, match="is a symlink"):
        ensure_dir(str(tmp_path / "log"))
    with pytest.raises(UnsafePathError):
        open_append(str(tmp_path / "log" / "events.jsonl"))
    assert list(real.iterdir()) == []


def test_fifo_at_the_log_path_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "events.jsonl")
    with pytest.raises(OSError):
        open_append(str(tmp_path / "events.jsonl"))


def test_hard_link_at_the_log_path_is_refused(tmp_path):
    (tmp_path / "other").write_bytes(b"x")
    os.link(tmp_path / "other", tmp_path / "events.jsonl")
    with pytest.raises(UnsafePathError, match="hard links"):
        open_append(str(tmp_path / "events.jsonl"))
    assert (tmp_path / "other").read_bytes() == b"x"


def test_dir_owned_by_another_user_is_refused(tmp_path):
    need_root()
    d = tmp_path / "logs"
    d.mkdir()
    os.chown(d, 65534, 65534)
    with pytest.raises(UnsafePathError) as e:
        ensure_dir(str(d))
    assert str(d) in str(e.value) and "uid 65534" in str(e.value)
    with pytest.raises(UnsafePathError):
        open_append(str(d / "events.jsonl"))
    assert list(d.iterdir()) == []


def test_ancestor_owned_by_another_user_is_refused(tmp_path):
    need_root()
    parent = tmp_path / "user-owned"
    parent.mkdir()
    os.chown(parent, 65534, 65534)
    with pytest.raises(UnsafePathError, match="uid 65534"):
        ensure_dir(str(parent / "agtap" / "logs"))
    assert not (parent / "agtap").exists()


def test_file_owned_by_another_user_is_refused(tmp_path):
    need_root()
    f = tmp_path / "events.jsonl"
    f.write_bytes(b"theirs\n")
    os.chown(f, 65534, 65534)
    with pytest.raises(UnsafePathError, match="uid 65534"):
        open_append(str(f))
    assert f.read_bytes() == b"theirs\n" and os.stat(f).st_uid == 65534


def test_world_writable_non_sticky_ancestor_is_refused(tmp_path):
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    with pytest.raises(UnsafePathError, match="writable by others"):
        ensure_dir(str(open_dir / "logs"))
    os.chmod(open_dir, 0o1777)  # sticky, like /tmp: allowed
    ensure_dir(str(open_dir / "logs"))


def test_failure_log_counts_every_failure_and_logs_once_per_interval(caplog):
    fl = FailureLog(logging.getLogger("agtap.test"), "writing x", interval=3600)
    with caplog.at_level(logging.WARNING, logger="agtap.test"):
        for _ in range(5):
            fl.failed(OSError(28, "No space left on device"))
    assert fl.count == 5
    assert len(caplog.records) == 1 and "writing x failed" in caplog.records[0].getMessage()
    fl._last -= 3601  # the interval has passed
    with caplog.at_level(logging.WARNING, logger="agtap.test"):
        fl.failed(OSError(5, "EIO"))
    assert len(caplog.records) == 2 and "4 more since last report" in caplog.records[1].getMessage()


def test_missing_group_is_looked_up_again_only_when_etc_group_changes(monkeypatch):
    from agtap.sinks import fsutil
    lookups = []

    def getgrnam(name):
        lookups.append(name)
        raise KeyError(name)
    monkeypatch.setattr(fsutil.grp, "getgrnam", getgrnam)
    monkeypatch.setattr(fsutil, "_MISSING", {})
    key = [(1, 1)]
    monkeypatch.setattr(fsutil, "_group_file_key", lambda: key[0])
    assert fsutil.group_id("agtap-nosuchgroup") == -1
    assert fsutil.group_id("agtap-nosuchgroup") == -1
    assert lookups == ["agtap-nosuchgroup"]             # the negative answer is cached
    key[0] = (1, 2)                                      # groupadd rewrote /etc/group
    assert fsutil.group_id("agtap-nosuchgroup") == -1
    assert lookups == ["agtap-nosuchgroup"] * 2
    monkeypatch.setattr(fsutil.grp, "getgrnam", lambda name: type("G", (), {"gr_gid": 4242})())
    key[0] = (1, 3)
    monkeypatch.setattr(fsutil, "_GIDS", {})
    assert fsutil.group_id("agtap-nosuchgroup") == 4242  # created while agtap runs: found
