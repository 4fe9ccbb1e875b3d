"""Which processes the per-process probe scope watches (agtap/capture/watchpolicy.py), on a
made-up /proc: executable, process and thread names, the libraries an executable links."""

from __future__ import annotations

import os
import shutil

from agtap.capture.watchpolicy import WatchPolicy, is_process


def fake_proc(root, pid: int, exe: str, comm: str, threads: dict[int, str] | None = None, tgid: int | None = None):
    d = root / str(pid)
    (d / "task").mkdir(parents=True)
    os.symlink(exe, d / "exe")
    (d / "comm").write_text(comm + "\n")
    (d / "status").write_text(f"Name:\t{comm}\nTgid:\t{tgid or pid}\nPid:\t{pid}\n")
    for tid, name in {pid: comm, **(threads or {})}.items():
        (d / "task" / str(tid)).mkdir()
        (d / "task" / str(tid) / "comm").write_text(name + "\n")


def test_runtimes_by_executable_name_process_name_and_linked_library(tmp_path):
    proc = tmp_path / "proc"
    fake_proc(proc, 10, "/usr/bin/python3.11", "my-agent")            # a script: named after itself
    fake_proc(proc, 11, shutil.which("curl") or "/usr/bin/curl", "curl")   # links libcurl.so.4
    fake_proc(proc, 12, "/usr/sbin/nginx", "nginx")
    fake_proc(proc, 13, "/opt/x/anything", "node")                    # process name
    p = WatchPolicy(proc_root=str(proc))
    assert p.is_runtime(10) and p.is_runtime(13)
    assert "libcurl.so.4" in p.libraries(11) and p.is_runtime(11)    # the real curl binary's DT_NEEDED
    assert not p.is_runtime(12)
    assert [p.at_start(pid) for pid in (10, 12, 13)] == ["runtime", "", "runtime"]
    assert p.at_start(12, by_exe=True) == "executable"


def test_a_filter_names_by_pid_process_or_thread_name_and_nothing_else_is_allowed(tmp_path):
    proc = tmp_path / "proc"
    fake_proc(proc, 20, "/usr/bin/python3.11", "python3")
    fake_proc(proc, 21, "/usr/bin/node", "node", threads={22: "HttpClient"})
    fake_proc(proc, 23, "/usr/bin/curl", "curl")
    p = WatchPolicy(proc_root=str(proc))
    assert not p.filtered and all(p.allowed(x) for x in (20, 21, 23))
    p.set_filter([23], ["HttpClient"])
    assert p.filtered
    assert [p.named(x) for x in (20, 21, 23)] == [False, True, True]   # 21 by a thread's name, 23 by pid
    assert [p.at_start(x) for x in (20, 21, 23)] == ["", "filter", "filter"]
    assert not p.allowed(20)
    p.set_filter([], [])
    assert p.allowed(20) and p.at_start(20) == "runtime"


def test_a_thread_is_not_a_process(tmp_path):
    proc = tmp_path / "proc"
    fake_proc(proc, 30, "/usr/bin/node", "node")
    fake_proc(proc, 31, "/usr/bin/node", "node", tgid=30)    # /proc/31 of a thread of 30
    assert is_process(30, str(proc)) and not is_process(31, str(proc))
