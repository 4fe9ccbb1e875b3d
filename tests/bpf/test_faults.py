"""Faults on the real kernel: clients killed mid-stream, the daemon killed, a full disk, a flooded ring
buffer, rotation under load, a planted symlink, and secrets end to end (files and D-Bus).

Every test runs the real daemon (`agtap` in the foreground: BPF, pipeline, sinks) or `agtap record`,
and official clients in processes of their own against the local TLS fake API. Other processes on
this machine may be traced too, so events are always selected by the client's pid. Timing on a
shared 2-core machine is noisy: waits are generous, assertions are about correctness.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from agtap import busnames as B
from agtap.capture.chunk import Chunk, ConnClosed
from agtap.pipeline import Pipeline
from agtap.providers.pricing import PriceTable
from tests.support.agtapd import body_files, log_files, read_lines, wait_until
from tests.support import API_KEYS, Reply, run_client, start_client
from tests.support.clients import CLIENTS_DIR, PYTHON, client_env

REPLY = dict(text="Hello there, friend of agtap.", input_tokens=30, output_tokens=4)


def replay(items, pid: int) -> tuple[Pipeline, list]:
    """The recorded items of one process through a fresh Pipeline (as the daemon would feed them)."""
    calls = []
    p = Pipeline(calls.append, prices=PriceTable(override=None))
    for it in items:
        if isinstance(it, Chunk) and it.pid == pid:
            p.feed(it)
        elif isinstance(it, ConnClosed) and it.conn.pid == pid:
            p.feed(it)
    return p, calls


# --- a traced process killed mid-stream --------------------------------------------------------

def test_client_sigkilled_mid_stream_is_one_incomplete_event(agtapd, tracer_run, fake_api):
    """200 SSE events 20 ms apart; SIGKILL the client about a second in. The daemon reports exactly one
    event, incomplete (process_exit), with the tokens the stream had reported by then; a recording of
    the same run, replayed, leaves no connection state behind for that process."""
    d = agtapd()
    fake_api.script(Reply(**REPLY, events=200, event_delay=0.02))
    proc = start_client("python-anthropic", fake_api, "stream", wait_go=True)
    proc.wait_ready()
    rec = tracer_run("-p", str(proc.pid))
    proc.go()
    # wait until the request has arrived (the fake API took the scripted reply and streams it),
    # then about 40 of the 200 events
    assert wait_until(lambda: not fake_api._queue, 30), "the request never arrived"
    time.sleep(0.8)
    assert proc.popen.poll() is None, "the client finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    ex = fake_api.wait_for(1, timeout=30)[0]
    assert ex.client_gone, "the fake API saw the whole stream delivered"

    evs = d.events(proc.pid, n=1, timeout=30)
    time.sleep(1.0)
    evs = d.events(proc.pid)
    assert len(evs) == 1, evs
    ev = evs[0]
    assert ev["incomplete"] is True and ev["incomplete_reason"] == "process_exit", ev
    assert ev["streaming"] is True and ev["provider"] == "anthropic" and ev["http_status"] == 200
    # message_start carried input_tokens=30 and the provisional output count 1; the final count
    # (message_delta) never came
    assert ev["input_tokens"] == 30 and ev["output_tokens"] == 1, ev
    assert ev["ttft_ms"] is not None and ev["latency_ms"] >= ev["ttft_ms"]

    items = rec.stop()
    p, calls = replay(items, proc.pid)
    assert any(isinstance(i, ConnClosed) and i.reason == "process_exit" for i in items)
    assert [c.incomplete_reason for c in calls] == ["process_exit"]
    assert not [k for k in p.conns if k.pid == proc.pid]
    assert p.stats.conns_open == 0 and p.stats.internal_errors == 0


# --- the daemon killed under load, then restarted -------------------------------------------------

LOADER = textwrap.dedent("""
    import json, os, ssl, sys, time, http.client
    port, n, key = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    ctx = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)
    body = json.dumps({"model": "claude-load", "max_tokens": 16, "stream": False,
                       "messages": [{"role": "user", "content": "x" * 2000}]})
    ok = 0
    for i in range(n):
        conn.request("POST", "/v1/messages", body, {"Content-Type": "application/json", "x-api-key": key})
        r = conn.getresponse(); r.read(); ok += r.status == 200
    print(json.dumps({"pid": os.getpid(), "ok": ok}))
""")


def start_loaders(tmp_path: Path, api, count: int, calls_each: int, key: str = "sk-ant-agtap-load-0000"):
    script = tmp_path / "loader.py"
    script.write_text(LOADER)
    return [subprocess.Popen([PYTHON, str(script), str(api.port), str(calls_each), key], cwd=str(CLIENTS_DIR),
                             env=client_env(api), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(count)]


def finish_loaders(procs, timeout: float = 300) -> dict[int, int]:
    """pid -> calls answered 200, for every loader (all must exit 0)."""
    out = {}
    for p in procs:
        o, e = p.communicate(timeout=timeout)
        assert p.returncode == 0, e[-3000:]
        r = json.loads(o.strip().splitlines()[-1])
        out[r["pid"]] = r["ok"]
    return out


def test_daemon_sigkill_under_load_leaves_whole_lines_and_bodies(agtapd, fake_api, tmp_path):
    d = agtapd()
    fake_api.default = Reply(**REPLY)
    loaders = start_loaders(tmp_path, fake_api, 3, 400)
    pids = [p.pid for p in loaders]
    # kill it while events are being written: once some have landed, without warning
    assert wait_until(lambda: sum(len(d.events(pid)) for pid in pids) >= 30, 120, 0.05)
    killed_at = sum(len(d.events(pid)) for pid in pids)
    d.kill()
    done = finish_loaders(loaders)
    assert sum(done.values()) == 1200

    lines = read_lines(log_files(d.log))                       # every line whole and JSON
    tmps = [f for f in body_files(d.bodies) if f.name.endswith(".tmp")]
    print(f"\nSIGKILL after {killed_at} events logged; {len(lines)} lines, "
          f"{len(body_files(d.bodies)) - len(tmps)} bodies, {len(tmps)} temp files left")
    assert lines and all(set(e) >= {"event_id", "id", "pid", "model"} for e in lines)
    for f in body_files(d.bodies):                             # every visible body whole
        if f.name.endswith(".json"):
            json.loads(f.read_bytes())
        else:
            assert f.name.startswith(".") and f.name.endswith(".tmp"), f"unexpected file {f}"
    for e in lines:
        if e["pid"] in pids and e["body_path"]:
            assert Path(e["body_path"]).is_file()              # a logged body_path exists (fsynced, renamed)

    d2 = agtapd(log=d.log, bodies=d.bodies)                    # restart on the same files
    assert not [f for f in body_files(d.bodies) if f.name.endswith(".tmp")], "temp files left after restart"
    before = len(lines)
    run = run_client("python-anthropic", fake_api, "nonstream").check()
    assert len(d2.events(run.pid, n=1)) == 1
    after = read_lines(log_files(d.log))
    assert len(after) >= before + 1
    assert d2.stop() == 0


# --- disk full on the log and bodies filesystem ----------------------------------------------------

@pytest.fixture
def small_fs(tmp_path, _need_root):
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path: Path) -> Path:
    """Take every free page of the filesystem (a file with pages of its own may still grow into its last one)."""
    filler = path / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (65536, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def test_disk_full_keeps_tracing_counts_failures_logs_once_and_recovers(agtapd, fake_api, small_fs, tmp_path):
    out = tmp_path / "stdout.jsonl"
    d = agtapd(log=small_fs / "log" / "events.jsonl", bodies=small_fs / "bodies", stdout=out)
    fake_api.default = Reply(**REPLY)
    assert d.log.exists() and d.log.stat().st_size == 0      # opened at start; no page of its own yet
    filler = fill(small_fs)
    pids = []
    for _ in range(6):
        pids.append(run_client("python-anthropic", fake_api, "nonstream").check().pid)

    def stdout_events(pid):
        return [e for e in read_lines([out]) if e["pid"] == pid] if out.exists() else []
    # tracing goes on: every call still reaches stdout, with no body file
    for pid in pids:
        evs = wait_until(lambda: stdout_events(pid), 30)
        assert len(evs) == 1, (pid, evs)
        assert evs[0]["body_path"] is None and evs[0]["input_tokens"] == 30
    assert all(d.events(pid) == [] for pid in pids)        # ... but not to the full log
    read_lines(log_files(d.log))                               # and the log holds whole lines only
    err = d.stderr()
    # one warning per sink per minute, not one per event (6 failures each)
    assert err.count("writing event log") == 1, err
    assert err.count("writing bodies under") == 1, err
    assert "No space left on device" in err or "short write" in err, err
    assert d.proc.poll() is None

    filler.unlink()                                            # space is back
    run = run_client("python-anthropic", fake_api, "nonstream").check()
    evs = d.events(run.pid, n=1, timeout=30)
    assert len(evs) == 1 and evs[0]["body_path"] and Path(evs[0]["body_path"]).is_file()
    json.loads(Path(evs[0]["body_path"]).read_bytes())
    assert d.stop() == 0


# --- ring buffer pressure ----------------------------------------------------------------------------

BURST = textwrap.dedent("""
    import ctypes, os, sys, time
    ctypes.CDLL(None).prctl(15, b"agtap-burst", 0, 0, 0)      # PR_SET_NAME: the tracer filters on it
    r, w = os.pipe()
    if os.fork() == 0:                                        # the reader: drain the pipe
        os.close(w)
        ctypes.CDLL(None).prctl(15, b"agtap-burst", 0, 0, 0)
        while os.read(r, 1 << 20):
            pass
        os._exit(0)
    os.close(r)
    line = b'{"jsonrpc":"2.0","method":"notifications/flood","params":{"x":"' + b"a" * (1 << 20) + b'"}}\\n'
    end = time.monotonic() + float(sys.argv[1])
    n = 0
    while time.monotonic() < end:
        os.write(w, line)
        n += 1
    os.close(w)
    os.wait()
    print(n)
""")


def test_ring_buffer_flood_is_counted_and_capture_recovers(tracer_run, fake_api, tmp_path):
    """Six processes write 1 MiB JSON-RPC lines into pipes as fast as they can for 3 s (GBs, far past
    the 16 MiB ring buffer and what userspace drains): lost records are counted in the summary, and a
    normal call made afterwards is captured whole."""
    rec = tracer_run("-c", "agtap-burst", "-c", "curl")
    script = tmp_path / "burst.py"
    script.write_text(BURST)
    procs = [subprocess.Popen([PYTHON, str(script), "3"], stdout=subprocess.PIPE, text=True) for _ in range(6)]
    written = sum(int(p.communicate(timeout=120)[0]) for p in procs)
    assert written > 16                                         # far more than 16 MiB went through pipes
    time.sleep(3)                                               # let the tracer drain its backlog
    fake_api.script(Reply(**REPLY))
    run = run_client("curl", fake_api, "anthropic").check()
    fake_api.wait_for(1)
    items = rec.stop(settle=2)
    summary = "".join(rec.stderr)
    m = re.search(r"lost records (\d+)", summary)
    assert m, summary
    assert int(m.group(1)) > 0, f"no loss reported after {written} MiB: {summary}"
    print(f"\nring buffer flood: {written} MiB written to pipes; {summary.strip().splitlines()[-1]}")
    _, calls = replay(items, run.pid)
    assert len(calls) == 1, [c.to_dict() for c in calls]
    c = calls[0]
    assert not c.incomplete and c.input_tokens == 30 and c.output_tokens == 4 and c.stop_reason == "end_turn"


# --- rotation under load ------------------------------------------------------------------------------

def test_rotation_under_load_loses_and_tears_no_line(agtapd, fake_api, tmp_path):
    """--max-log-size 1 (MB) while 4 processes make 600 calls each: every call is exactly one whole
    line in exactly one of the files."""
    d = agtapd("--max-log-size", "1", "--max-log-files", "50")
    fake_api.default = Reply(**REPLY)
    loaders = start_loaders(tmp_path, fake_api, 4, 600)
    made = finish_loaders(loaders)
    assert sum(made.values()) == 2400

    def all_in():
        evs = d.events()
        return sum(1 for e in evs if e["pid"] in made) >= 2400
    wait_until(all_in, 120, 0.5)
    files = log_files(d.log)
    assert len(files) >= 2, "the log never rotated"
    evs = d.events()
    for pid, n in made.items():
        mine = [e for e in evs if e["pid"] == pid]
        assert len(mine) == n, (pid, len(mine), n)
        assert len({e["event_id"] for e in mine}) == n               # no line written twice
    for f in files:
        assert f.stat().st_size <= 1024 * 1024, f
    print(f"\nrotation: {sum(made.values())} calls, {len(evs)} lines in {len(files)} files")
    assert d.stop() == 0


# --- a planted symlink ---------------------------------------------------------------------------------

@pytest.fixture
def planted(tmp_path, _need_root):
    """A directory root owns, with a symlink in it (owned by nobody) to a file the attacker wants written."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    os.chmod(victim, 0o644)
    d = tmp_path / "planted"
    d.mkdir(mode=0o755)
    return d, victim


def _symlink(at: Path, to: Path) -> None:
    at.symlink_to(to)
    os.lchown(at, 65534, 65534)


@pytest.mark.parametrize("where", ["log", "bodies"])
def test_a_symlink_planted_while_running_is_never_followed(agtapd, planted, fake_api, tmp_path, where):
    """The daemon is running when the symlink appears: where it reopens its log (the log was moved
    away, as logrotate does) or where it creates the day's body directory. Nothing is written
    through it, the refusal is on stderr, and the call still reaches stdout."""
    d0, victim = planted
    log, bodies = d0 / "events.jsonl", d0 / "bodies"
    victim_dir = victim.parent / "victim-dir"
    victim_dir.mkdir()
    out = tmp_path / "stdout.jsonl"
    d = agtapd(log=log, bodies=bodies, stdout=out)
    if where == "log":
        log.rename(d0 / "moved.jsonl")
        _symlink(log, victim)
    else:
        _symlink(bodies / time.strftime("%Y-%m-%d", time.gmtime()), victim_dir)
    time.sleep(1.2)                       # the log sink looks for a replaced log at most once a second
    fake_api.script(Reply(**REPLY))
    run = run_client("python-anthropic", fake_api, "nonstream").check()
    assert wait_until(lambda: [e for e in read_lines([out]) if e["pid"] == run.pid] if out.exists() else [], 30)
    assert victim.read_bytes() == b"precious\n"
    assert list(victim_dir.iterdir()) == []
    assert (log if where == "log" else bodies / time.strftime("%Y-%m-%d", time.gmtime())).is_symlink()
    assert "refusing unsafe path" in d.stderr() and "is a symlink" in d.stderr(), d.stderr()
    assert d.proc.poll() is None


@pytest.mark.parametrize("where", ["log", "bodies"])
def test_planted_symlink_stops_the_daemon_start(agtapd, planted, where):
    d0, victim = planted
    log, bodies = d0 / "events.jsonl", d0 / "bodies"
    _symlink(log if where == "log" else bodies, victim if where == "log" else victim.parent)
    d = agtapd(log=log, bodies=bodies, expect_ready=False)
    rc = d.proc.wait(60) if not d.ready else None
    assert not d.ready and rc not in (None, 0), d.stderr()
    assert "symlink" in d.stderr()


# --- secrets end to end: files and D-Bus -----------------------------------------------------------------

COOKIE = "agtap_session=agtap-cookie-secret-5b1f"
SET_COOKIE = "agtap_sid=agtap-set-cookie-secret-77aa; Path=/; HttpOnly"
SECRETS = [*API_KEYS.values(), "agtap-cookie-secret-5b1f", "agtap-set-cookie-secret-77aa",
           "AIzaAgtapTestQueryKey9c0e", "agtap-azure-key-3d3d"]


async def _bus(address: str, calls: list) -> list:
    from dbus_next import Message, MessageType
    from dbus_next.aio import MessageBus
    bus = await MessageBus(bus_address=address).connect()
    out = []
    try:
        for member, sig, body in calls:
            reply = await bus.call(Message(destination=B.BUS_NAME, path=B.OBJECT_PATH,
                                           interface=B.READ_INTERFACE, member=member, signature=sig, body=body))
            assert reply.message_type != MessageType.ERROR, (member, reply.error_name, reply.body)
            out.append(reply.body[0])
    finally:
        bus.disconnect()
    return out


def test_no_secret_in_any_file_or_dbus_reply(agtapd, fake_api, tmp_path, monkeypatch):
    from tests.support.dbus.bus import PrivateBus
    with PrivateBus() as bus:
        d = agtapd("--bus", "system", env=bus.env())
        fake_api.default = Reply(**REPLY, headers={"Set-Cookie": SET_COOKIE})
        pids = []
        for kind, mode, extra in [
            ("python-anthropic", "stream", {}),                     # Authorization: Bearer
            ("python-openai", "chat", {}),                          # Authorization: Bearer
            ("python-gemini", "nonstream", {}),                     # x-goog-api-key
            ("python-openai", "azure-chat", {"api_key": "agtap-azure-key-3d3d"}),   # api-key
            ("curl", "gemini-query-key", {"api_key": "AIzaAgtapTestQueryKey9c0e"}),  # ?key=
            ("curl", "anthropic", {}),                              # x-api-key
        ]:
            pids.append(run_client(kind, fake_api, mode, **extra).check().pid)
        # cookies (and x-api-key) from a hand-written client
        raw = subprocess.run([PYTHON, str(CLIENTS_DIR / "py_raw.py"), "--lib", "requests", "--url",
                              f"https://127.0.0.1:{fake_api.port}/v1/messages",
                              "--body", json.dumps({"model": "claude-x", "max_tokens": 5,
                                                    "messages": [{"role": "user", "content": "hi"}]}),
                              "--header", "Content-Type: application/json",
                              "--header", f"x-api-key: {API_KEYS['python-requests']}",
                              "--header", f"Cookie: {COOKIE}"],
                             env=client_env(fake_api), capture_output=True, text=True, timeout=60, cwd=str(CLIENTS_DIR))
        assert raw.returncode == 0, raw.stderr
        pids.append(json.loads(raw.stdout)["pid"])
        sent = fake_api.wait_for(len(pids))
        wire = b"".join(ex.raw_request + ex.raw_response for ex in sent)
        for s in ("agtap-cookie-secret-5b1f", "agtap-set-cookie-secret-77aa", "AIzaAgtapTestQueryKey9c0e",
                  "agtap-azure-key-3d3d", API_KEYS["python-gemini"], API_KEYS["curl"]):
            assert s.encode() in wire, f"{s} never crossed the wire: the test would prove nothing"

        for pid in pids:
            assert len(d.events(pid, n=1)) == 1, pid
        evs = [e for e in d.events() if e["pid"] in pids]
        ids = [e["event_id"] for e in evs]
        assert all(e["body_path"] for e in evs)
        recent, *bodies = asyncio.run(_bus(bus.address, [("GetRecentCalls", "u", [1000])]
                                           + [("GetCallBodies", "s", [i]) for i in ids]))
        assert set(ids) <= {json.loads(x)["event_id"] for x in recent}
        assert d.stop() == 0

    files = [p for p in tmp_path.rglob("*") if p.is_file()]     # log, bodies and the daemon's own stderr
    blob = b"".join(p.read_bytes() for p in files) + "".join(recent + bodies).encode()
    assert b"[REDACTED]" in blob
    for s in SECRETS:
        assert s.encode() not in blob, f"{s} leaked"
    assert all(b"[REDACTED]" in x.encode() for x in bodies)
