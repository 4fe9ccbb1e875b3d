"""agtapctl against the real daemon (FakeTracer) on a private bus with the shipped policy, as real users."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from agtap.ctl import call_line, main
from tests.support.dbus.bus import OUTSIDER, TESTER, PrivateBus
from tests.support.dbus.procs import PY, REPO, Daemon, ctl, env_for
from tests.support.dbus.threadstop import thread_stopped

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates test users and switches to them")


def test_exit_3_when_no_bus(tmp_path):
    r = ctl(None, ["status"], env_for({"DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={tmp_path}/none"}))
    assert r.returncode == 3 and r.stderr.startswith("agtapctl: cannot reach the system bus"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_exit_3_when_the_name_has_no_owner():
    with PrivateBus() as empty:                 # a bus of its own: no agtap on it
        results = [(args, ctl(None, args, env_for(empty.env()))) for args in (["status"], ["calls", "--json"], ["start"])]
    for args, r in results:
        assert r.returncode == 3, (args, r.stderr)
        assert r.stderr == "agtapctl: agtap is not running: sudo systemctl start agtap\n"


@needs_root
def test_exit_4_when_denied_with_what_to_do(daemon, env):
    r = ctl(OUTSIDER, ["status"], env)
    assert r.returncode == 4 and "sudo usermod -aG agtap $USER" in r.stderr, r.stderr
    r = ctl(OUTSIDER, ["calls", "--json"], env)
    assert r.returncode == 4 and r.stdout == ""
    for user in (TESTER, OUTSIDER):
        r = ctl(user, ["filter", "--comm", "node"], env)
        assert r.returncode == 4 and "sudo agtapctl" in r.stderr and "io.agtap.manage" in r.stderr, r.stderr


@needs_root
def test_status_json_shape(daemon, env):
    r = ctl(TESTER, ["status", "--json"], env)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert set(d) == {"version", "capturing", "filters", "targets", "started_at", "stats"}
    assert d["capturing"] is True and d["filters"] == {"pids": [], "comms": []}
    assert d["stats"]["calls"] >= 3 and isinstance(d["stats"]["calls_by_provider"], dict)
    r = ctl(TESTER, ["status"], env)
    assert r.returncode == 0 and "capturing" in r.stdout and "calls: " in r.stdout


@needs_root
def test_stats_json_shape(daemon, env):
    d = json.loads(ctl(TESTER, ["stats", "--json"], env).stdout)
    for k in ("calls", "input_tokens", "output_tokens", "lost_records", "cut_records", "parse_errors",
              "uptime_s", "calls_by_provider", "calls_by_kind"):
        assert k in d, k
    # a line per counter; the sinks' counters a line per sink
    assert ctl(TESTER, ["stats"], env).stdout.count("\n") == len(d) - 1 + len(d["sinks"]) and d["sinks"]


@needs_root
def test_calls_json_and_human(daemon, env):
    r = ctl(TESTER, ["calls", "--json", "-n", "2"], env)
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and len(lines) == 2
    ev = json.loads(lines[0])
    assert ev["provider"] == "anthropic" and len(ev["event_id"]) == 32
    human = ctl(TESTER, ["calls", "-n", "1"], env).stdout.splitlines()
    assert len(human) == 1
    assert "python3[4242]" in human[0] and "anthropic" in human[0] and "claude-sonnet-4-5" in human[0]
    assert "12/34" in human[0] and "50 ms" in human[0] and "end_turn" in human[0]
    body = ctl(TESTER, ["body", "--json", ev["event_id"]], env)
    assert body.returncode == 0 and json.loads(body.stdout)
    assert "sk-ant-api03" not in body.stdout
    nf = ctl(TESTER, ["body", "f" * 32], env)
    assert nf.returncode == 1 and nf.stderr.startswith("agtapctl: not found:")


@needs_root
def test_calls_follow(daemon, env):
    p = subprocess.Popen(["runuser", "-u", TESTER, "--", PY, "-m", "agtap.ctl", "calls", "--follow", "--json",
                          "-n", "0"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        import select
        for _ in range(10):                    # until it has subscribed: one more call a second
            daemon.proc.send_signal(signal.SIGUSR1)
            ready, _, _ = select.select([p.stdout], [], [], 1.0)
            if ready:
                break
        assert ready, "no line from --follow"
        assert json.loads(p.stdout.readline())["provider"] == "anthropic"
    finally:
        p.terminate()
        p.wait(5)


@needs_root
def test_control_as_root(daemon, env):
    assert ctl(None, ["filter", "--comm", "python3", "--pid", "7"], env).returncode == 0
    d = json.loads(ctl(None, ["status", "--json"], env).stdout)
    assert d["filters"] == {"pids": [7], "comms": ["python3"]}
    bad = ctl(None, ["filter", "--comm", "x" * 16], env)
    assert bad.returncode == 1 and bad.stderr.startswith("agtapctl: invalid argument: process name")
    assert ctl(None, ["filter", "--clear"], env).returncode == 0
    assert ctl(None, ["stop"], env).returncode == 0
    assert json.loads(ctl(None, ["status", "--json"], env).stdout)["capturing"] is False
    assert ctl(None, ["start"], env).returncode == 0
    assert json.loads(ctl(None, ["status", "--json"], env).stdout)["capturing"] is True
    assert ctl(None, ["clean"], env).returncode == 0
    assert ctl(None, ["calls", "--json"], env).stdout == ""


def test_filter_needs_an_argument(capsys):
    with pytest.raises(SystemExit) as e:
        main(["filter"])
    assert e.value.code == 2


def test_call_line_is_terminal_safe():
    ev = {"ts": "2026-11-26T23:37:25.123456Z", "pid": 1, "proc": "evil\x1b]0;pwned\x07",
          "provider": "openai", "model": "gpt\x1b[2J-4o\u202e", "input_tokens": 5, "output_tokens": None,
          "latency_ms": 12.4, "stop_reason": "stop\x9b31m"}
    line = call_line(ev)
    assert not any(c in line for c in "\x1b\x07\x9b\u202e"), repr(line)
    assert "evil[1]" in line and "gpt-4o" in line and "5/-" in line and "12 ms" in line


def test_call_line_incomplete():
    line = call_line({"ts": "bad", "pid": 2, "proc": "node", "provider": "mcp", "model": None,
                      "incomplete": True, "incomplete_reason": "shutdown"})
    assert "incomplete: shutdown" in line and "node[2]" in line


@needs_root
def test_follow_exits_3_when_the_service_stops(bus, env, tmp_path):
    os.chmod(tmp_path, 0o755)
    with PrivateBus() as own:
        dm = Daemon(str(tmp_path), own.env(), "--calls", "1").ready()
        p = subprocess.Popen([PY, "-m", "agtap.ctl", "calls", "--follow"], cwd=REPO, env=env_for(own.env()),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert "anthropic" in p.stdout.readline()      # the recent call: it has subscribed by now
        assert dm.stop() == 0
        _out, err = p.communicate(timeout=10)
        assert p.returncode == 3 and err == "agtapctl: agtap stopped\n", err


def test_session_bus_same_user(tmp_path):
    """--bus session: the bus's only user is the daemon's own uid, which the service lets in."""
    with PrivateBus(session=True) as b:
        dm = Daemon(str(tmp_path), {"DBUS_SESSION_BUS_ADDRESS": b.address}, "--bus", "session", "--calls", "1")
        dm.ready()
        e = env_for({"DBUS_SESSION_BUS_ADDRESS": b.address, "DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent"})
        r = ctl(None, ["--bus", "session", "calls", "--json"], e)
        assert r.returncode == 0 and json.loads(r.stdout)["provider"] == "anthropic", r.stderr
        assert ctl(None, ["--bus", "session", "filter", "--comm", "node"], e).returncode == 0
        assert ctl(None, ["status"], e).returncode == 3          # not on the system bus
        assert dm.stop() == 0


def test_call_line_stays_one_line():
    line = call_line({"ts": "x", "pid": "1\n2", "proc": "a\tb", "provider": "openai\n", "model": "m\r\nfake line",
                      "stop_reason": "end\n23:00:00 forged"})
    assert "\n" not in line and "\r" not in line and "\t" not in line


def test_a_stuck_service_is_a_timeout_not_a_hang(tmp_path):
    with PrivateBus(session=True) as b:
        dm = Daemon(str(tmp_path), {"DBUS_SESSION_BUS_ADDRESS": b.address}, "--bus", "session").ready()
        e = env_for({"DBUS_SESSION_BUS_ADDRESS": b.address}, AGTAPCTL_TIMEOUT="1")
        with thread_stopped(dm.proc.pid):                   # its loop stops: it owns its name, answers nothing
            r = ctl(None, ["--bus", "session", "status"], e, timeout=15)
        dm.proc.kill()
        dm.stop()
    assert r.returncode == 1 and "did not answer within 1 s" in r.stderr, r.stderr


def test_status_says_where_the_probes_sit(capsys):
    from agtap.ctl import print_status
    props = {"Capturing": True, "Version": "0.1", "StartedAt": 0, "Filters": {}, "Targets": []}
    print_status(props, {"probe_scope": "process", "watched_processes": 3, "uprobes": 25, "late_attach": 1})
    assert "probes: per process, 3 processes watched; 25 uprobes; late attach 1" in capsys.readouterr().out
    print_status(props, {"probe_scope": "host", "uprobes": 9, "late_attach": 0})
    assert "probes: host-wide; 9 uprobes; late attach 0" in capsys.readouterr().out
    print_status(props, {"probe_scope": "process", "watched_processes": 2, "uprobes": 20, "late_attach": 0,
                         "demoted": 4})
    assert "probes: per process, 2 processes watched; 20 uprobes; late attach 0; demoted 4" in capsys.readouterr().out
    print_status(props, {"probe_scope": "process", "watched_processes": 2, "uprobes": 20, "late_attach": 0,
                         "held_opens": 1234, "hold_timeouts": 2})
    assert "late attach 0; held at open 1,234 (2 too long)" in capsys.readouterr().out
