"""The daemon's lifecycle as systemd sees it: a real NOTIFY_SOCKET (unix datagram) read by the test.

The daemon is agtap.service.daemon.run in a subprocess with the FakeTracer
(loading BPF is the bpf tier's job); the bus is a private dbus-daemon with
the shipped policy, or none.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from pathlib import Path

import pytest

from agtap import busnames as B
from tests.support.dbus.bus import PrivateBus
from tests.support.dbus.procs import Daemon, client_calls, env_for
from tests.support.dbus.threadstop import thread_state, thread_stopped

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: only root may own io.agtap.Agtap1")


@pytest.fixture
def bus():
    with PrivateBus() as b:
        yield b


@pytest.fixture
def workdir():
    with tempfile.TemporaryDirectory() as d:
        yield d


@needs_root
def test_ready_only_once_the_name_is_owned_then_clean_exit_on_sigterm(bus, workdir):
    dm = Daemon(workdir, bus.env(), "--calls", "2", "--open", "1")
    dm.ready()
    # The name is owned the moment READY=1 arrives.
    (res,) = client_calls("root", [[B.READ_INTERFACE, "GetStats", "", []]], env_for(bus.env()))
    assert res["ok"], res
    status = [ln for ln in dm.notify.drain(1.5) if ln.startswith("STATUS=")]
    assert "STATUS=capturing · 2 targets · probes per process, 0 watched · 2 calls · 0 lost · 0 late attach" in status, status
    t0 = time.monotonic()
    dm.proc.send_signal(signal.SIGTERM)
    dm.notify.wait_for("STOPPING=1", 2)
    rc = dm.stop(timeout=2)
    assert rc == 0 and time.monotonic() - t0 < 2.0, dm.err
    events = dm.events()
    assert len(events) == 3
    assert [e.get("incomplete_reason") for e in events if e.get("incomplete")] == ["shutdown"]


@needs_root
def test_sigint_also_exits_zero(bus, workdir):
    dm = Daemon(workdir, bus.env()).ready()
    dm.proc.send_signal(signal.SIGINT)
    assert dm.stop(timeout=2) == 0, dm.err


@needs_root
def test_sighup_reloads_the_config_file(bus, workdir):
    conf = Path(workdir) / "agtap.toml"
    conf.write_text('comm = ["python3"]\n')
    dm = Daemon(workdir, bus.env(), "--config-file", str(conf)).ready()
    env = env_for(bus.env())
    get_filters = [["org.freedesktop.DBus.Properties", "Get", "ss", [B.READ_INTERFACE, "Filters"]]]
    assert client_calls("root", get_filters, env)[0]["body"][0] == {"pids": [], "comms": ["python3"]}
    conf.write_text('comm = ["node", "python3"]\npid = [42]\nmax_log_size = 7\nevent_log = "/elsewhere.jsonl"\n')
    before_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    dm.proc.send_signal(signal.SIGHUP)
    dm.notify.wait_for("RELOADING=1", 5)
    reload_msg = next(m for _, m in dm.notify.messages if "RELOADING=1" in m)
    mono = int(next(x for x in reload_msg.split("\n") if x.startswith("MONOTONIC_USEC="))[15:])
    assert before_ns // 1000 <= mono <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    dm.notify.wait_for("READY=1", 5)
    assert client_calls("root", get_filters, env)[0]["body"][0] == {"pids": [42], "comms": ["node", "python3"]}
    # A broken file is reported and the running configuration kept.
    conf.write_text('comm = ["node"]\nno_such_key = 1\n')
    dm.proc.send_signal(signal.SIGHUP)
    dm.notify.wait_for("READY=1", 5)
    assert client_calls("root", get_filters, env)[0]["body"][0] == {"pids": [42], "comms": ["node", "python3"]}
    assert dm.stop() == 0
    assert "no_such_key" in dm.err
    assert "event_log changed; it takes effect at the next restart" in dm.err


def _pings(dm, seconds: float) -> int:
    n = len(dm.notify.messages)
    dm.notify.drain(seconds)
    return sum("WATCHDOG=1" in m.split("\n") for _, m in dm.notify.messages[n:])


def test_watchdog_pings_come_from_the_loop(workdir):
    """The pings come from the event loop, not a thread of their own: with only the loop's
    thread stopped (ptrace; the poll thread and the rest run on) they stop, and resume after."""
    dm = Daemon(workdir, None, "--bus", "none", WATCHDOG_USEC="200000").ready()
    try:
        assert _pings(dm, 1.5) >= 4, dm.notify.lines()          # every 0.1 s
        threads = os.listdir(f"/proc/{dm.proc.pid}/task")
        assert len(threads) > 1, threads                         # there are others to keep running
        with thread_stopped(dm.proc.pid):
            dm.notify.drain(0.3)                                 # a ping already on its way
            assert _pings(dm, 1.5) == 0, "watchdog pings continued while the loop was stopped"
            assert all(thread_state(dm.proc.pid, int(t)) != "t" for t in threads if int(t) != dm.proc.pid)
        assert _pings(dm, 1.5) >= 4, dm.notify.lines()
    finally:
        dm.proc.kill()
        dm.stop()


def test_no_watchdog_pings_without_watchdog_usec(workdir):
    dm = Daemon(workdir, None, "--bus", "none").ready()
    assert not any("WATCHDOG=1" in ln for ln in dm.notify.drain(0.5))
    assert dm.stop() == 0


def test_foreground_continues_without_a_bus(workdir):
    dm = Daemon(workdir, {"DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={workdir}/no-such-bus"}, "--calls", "1").ready()
    time.sleep(0.5)
    assert dm.stop() == 0
    assert "continuing without D-Bus" in dm.err
    assert len(dm.events()) == 1


def test_service_mode_requires_the_bus(workdir):
    dm = Daemon(workdir, {"DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={workdir}/no-such-bus"}, "--mode", "service")
    assert dm.proc.wait(10) == 1
    with pytest.raises(TimeoutError):
        dm.notify.wait_for("READY=1", 0.1)
    assert any(ln.startswith("STATUS=failed: cannot connect") for ln in dm.notify.lines())
    dm.stop()


def test_capture_failure_exits_1_and_says_what_to_do(workdir):
    dm = Daemon(workdir, None, "--bus", "none", "--fail-start", "no kernel headers found")
    assert dm.proc.wait(10) == 1
    dm.stop()
    assert "no kernel headers found" in dm.err and "apt-get install linux-headers" in dm.err
    assert not any(ln == "READY=1" for ln in dm.notify.lines())


def test_a_refused_bpf_program_exits_with_the_status_the_unit_does_not_restart_on(workdir):
    # the Tracer raises BpfRefused (exit_status 3) when the verifier refuses a program
    # (test_capture_verifier.py); the daemon must hand that status to systemd
    from agtap.capture.verifier import EXIT_BPF_REFUSED
    dm = Daemon(workdir, None, "--bus", "none", "--fail-start", "the kernel's BPF verifier refused program x",
                "--fail-exit-status", str(EXIT_BPF_REFUSED))
    assert dm.proc.wait(10) == EXIT_BPF_REFUSED == 3
    dm.stop()
    assert "the kernel's BPF verifier refused program x" in dm.err
    assert not any(ln == "READY=1" for ln in dm.notify.lines())


def test_event_log_and_bodies_written(workdir):
    dm = Daemon(workdir, None, "--bus", "none", "--calls", "2").ready()
    time.sleep(0.5)
    assert dm.stop() == 0
    events = dm.events()
    assert [e["provider"] for e in events] == ["anthropic", "anthropic"]
    for e in events:
        assert e["body_path"] and Path(e["body_path"]).is_file()
        assert "sk-ant-api03" not in Path(e["body_path"]).read_text()
        assert json.loads(Path(e["body_path"]).read_text())


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_metrics_endpoint_serves_calls_and_capture_counters(workdir):
    import urllib.request
    port = _free_port()
    dm = Daemon(workdir, None, "--bus", "none", "--calls", "2", "--metrics-addr", f"127.0.0.1:{port}").ready()
    time.sleep(0.5)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert dm.stop() == 0
    assert 'agtap_requests_total{' in text and "agtap_lost_records_total 0.0" in text
    assert "agtap_targets 2.0" in text


def test_a_taken_metrics_port_is_a_clear_startup_error(workdir):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        dm = Daemon(workdir, None, "--bus", "none", "--metrics-addr", f"127.0.0.1:{s.getsockname()[1]}")
        assert dm.proc.wait(10) == 1
    dm.stop()
    assert "cannot set up the outputs" in dm.err and "Traceback" not in dm.err


def test_apply_sizes_reaches_the_real_sinks(tmp_path):
    from agtap.config import Config
    from agtap.service.daemon import apply_sizes, build_sinks
    cfg = Config(event_log=str(tmp_path / "e.jsonl"), bodies_dir=str(tmp_path / "b"), stdout=False)
    sinks = build_sinks(cfg, "foreground")
    try:
        apply_sizes(sinks, Config(max_log_size=7, max_log_files=2, max_body_store=3, body_retention=1.5))
        jsonl = next(s for s in sinks if s.name == "jsonl")
        bodies = next(s for s in sinks if s.name == "bodies")
        assert (jsonl.max_size, jsonl.max_files) == (7 * 1024 * 1024, 2)
        assert (bodies.max_store, bodies.retention_s) == (3 * 1024 * 1024, 5400.0)
    finally:
        for s in sinks:
            s.close()


def test_sigterm_while_attaching_exits_without_ready(workdir):
    dm = Daemon(workdir, None, "--bus", "none", "--start-delay", "1.5", WATCHDOG_USEC="200000")
    dm.notify.wait_for("STATUS=starting: attaching probes", 10)
    dm.notify.wait_for("WATCHDOG=1", 2)                # the loop is free while probes attach
    dm.proc.send_signal(signal.SIGTERM)
    dm.notify.wait_for("STOPPING=1", 5)
    assert dm.stop() == 0
    assert "READY=1" not in dm.notify.lines()


def test_a_stuck_detach_does_not_hold_the_exit(workdir):
    dm = Daemon(workdir, None, "--bus", "none", "--open", "1", "--stop-delay", "30").ready()
    time.sleep(0.3)
    t0 = time.monotonic()
    dm.proc.send_signal(signal.SIGTERM)
    assert dm.stop(timeout=5) == 0
    assert time.monotonic() - t0 < 2.5, time.monotonic() - t0
    assert "took over 1.5 s" in dm.err
    assert [e.get("incomplete_reason") for e in dm.events()] == ["shutdown"]


def test_a_broken_config_file_stops_the_start_with_its_name(workdir):
    conf = Path(workdir) / "agtap.toml"
    conf.write_text("max_log_sise = 5\n")
    dm = Daemon(workdir, None, "--bus", "none", "--config-file", str(conf))
    assert dm.proc.wait(10) == 1
    dm.notify.drain(0.2)
    dm.stop()
    assert f"{conf}: unknown key 'max_log_sise'" in dm.err and "Traceback" not in dm.err
    assert any(ln.startswith("STATUS=failed: ") for ln in dm.notify.lines())
