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
