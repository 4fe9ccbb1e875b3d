"""What the per-process scope decides for a process held at the open gate (opengate.py), on
fake maps; the gate itself and the kernel side: tests/bpf/test_open_gate.py."""

from __future__ import annotations

import os
import subprocess

import pytest

from agtap.capture.procfiles import key_of
from agtap.capture.scope import ProbeFile
from tests.unit.test_capture_demotion import RUNTIME, proc, scope_with, sleeper  # noqa: F401  (fixtures)


class Done:
    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1


def run_jobs(s) -> list[str]:
    """Run what the gate queued, as the attach thread would; the kinds of the jobs run."""
    kinds = []
    while True:
        try:
            job = s._jobs.get(0)
        except Exception:
            return kinds
        kinds.append(job[0])
        getattr(s, "_do_" + job[0])(*job[1:])


@pytest.fixture
def other(tmp_path):
    """A process that is no runtime (a copy of sleep under another name)."""
    exe = tmp_path / "agtap-gate-other"
    exe.write_bytes(open("/bin/sleep", "rb").read())
    os.chmod(exe, 0o755)
    p = subprocess.Popen([str(exe), "60"])
    yield p.pid
    p.kill()
    p.wait()


LIB = ("/usr/lib/x86_64-linux-gnu/libssl.so.3", (1, 2))


def test_a_process_that_is_no_runtime_goes_through_at_once(other):
    s, _ = scope_with()
    done = Done()
    s.on_open(other, LIB[1], LIB[0], False, done)
    assert done.calls == 1 and run_jobs(s) == [] and s.watched() == 0


def test_a_runtime_opening_libssl_waits_for_its_watch(proc):
    s, bpf = scope_with()
    done = Done()
    s.on_open(proc, LIB[1], LIB[0], False, done)
    assert done.calls == 0                        # held: its probes are not attached yet
    assert run_jobs(s) == ["gate"]
    assert done.calls == 1 and s._watched[proc].reason == "runtime"
    again = Done()
    s.on_open(proc, LIB[1], LIB[0], False, again)   # watched already, no probed file of that key: at once
    assert again.calls == 1


def test_an_exec_is_judged_by_the_file_it_is_about_to_run(other, sleeper):
    s, _ = scope_with()
    done = Done()
    s.on_open(other, key_of(sleeper), sleeper, True, done)   # `other` execs the runtime
    assert done.calls == 0 and run_jobs(s) == ["gate"] and done.calls == 1
    assert s._watched[other].reason == "runtime"
    s2, _ = scope_with()
    d2 = Done()
    s2.on_open(other, (1, 3), "/usr/bin/agtap-not-a-runtime", True, d2)
    assert d2.calls == 1 and s2.watched() == 0


def test_with_a_filter_only_what_it_names_is_held(other, sleeper):
    s, _ = scope_with()
    s.policy.set_filter([], ["agtap-gate-named"])
    done = Done()
    s.on_open(other, key_of(sleeper), sleeper, True, done)   # a runtime, but the filter does not name it
    assert done.calls == 1 and s.watched() == 0
    s.on_open(other, (1, 4), "/opt/x/agtap-gate-named", True, done)   # the name the exec gives it
    assert done.calls == 1 and run_jobs(s) == ["gate"] and done.calls == 2
    assert s._watched[other].reason == "filter"


def test_a_file_probed_host_wide_holds_nobody(proc):
    s, _ = scope_with()
    s._files[LIB[0]] = ProbeFile(LIB[0], [], True, set(), LIB[0], {LIB[1]}, True, host_wide=True)
    done = Done()
    s.on_open(proc, LIB[1], LIB[0], False, done)
    assert done.calls == 1 and s.watched() == 0


def test_an_exec_of_no_interest_goes_through_and_need_not_be_held_again(other, sleeper):
    s, _ = scope_with()
    done = Done()
    assert s.on_open(other, (1, 5), "/bin/ls", True, done, opened="/bin/ls") is True   # no runtime, no Go
    assert done.calls == 1 and run_jobs(s) == []
    assert s.on_open(other, key_of(sleeper), sleeper, True, Done()) is False   # a runtime: always judged
    s.policy.set_filter([], ["agtap-nomatch"])
    assert s.on_open(other, (1, 5), "/bin/ls", True, Done()) is False          # a filter is set: a later one may name it


def test_a_go_program_not_seen_before_is_looked_at_then_watched_before_it_runs(other, tmp_path, monkeypatch):
    import threading
    from agtap.capture import scope as scope_mod
    monkeypatch.setattr(scope_mod, "is_go_binary", lambda p: True)
    s, _ = scope_with()
    prog, key = str(tmp_path / "goclient"), (1, 6)
    looked_at = threading.Event()

    def locate(path):   # as the tracer's: the locate worker probes the file, then sets the event
        assert path == prog
        s._files[prog] = ProbeFile(prog, [], False, set(), prog, {key}, False)
        looked_at.set()
        return looked_at
    s.locate = locate
    done = Done()
    assert s.on_open(other, key, prog, True, done, opened=prog) is False
    assert done.calls == 0 and run_jobs(s) == ["locate"] and done.calls == 1
    assert s._watched[other].reason == "executable"

    s2, _ = scope_with()
    s2.locate = lambda path: None            # looked at: no crypto/tls in it
    d2 = Done()
    assert s2.on_open(other, (1, 7), prog, True, d2) is False and run_jobs(s2) == ["locate"] and d2.calls == 1
    assert s2.watched() == 0
    assert s2.on_open(other, (1, 7), prog, True, Done()) is True   # known now: not held again
    s3, _ = scope_with()
    s3.locate = lambda path: False           # the tracer's lock not had: not looked at, nothing remembered
    assert s3.on_open(other, (1, 8), prog, True, Done()) is False and run_jobs(s3) == ["locate"]
    assert (1, 8) not in s3._no_tls


def test_a_watched_process_execing_a_go_program_not_seen_before_has_it_looked_at(proc, tmp_path, monkeypatch):
    """A watched process (a runtime's child) execs a fresh Go build: judged like anyone's exec, never
    given an ignore mark unjudged."""
    from agtap.capture import scope as scope_mod
    monkeypatch.setattr(scope_mod, "is_go_binary", lambda p: True)
    s, _ = scope_with()
    s._watch(proc, "runtime")
    s.locate = lambda path: None   # looked at: nothing in it
    prog = str(tmp_path / "goclient")
    assert s.on_open(proc, (1, 9), prog, True, Done()) is False and run_jobs(s) == ["locate"]
