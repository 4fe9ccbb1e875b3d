"""Bun and Claude Code: TLS inside binaries that link BoringSSL statically, without symbols.

Real binaries from npm (pinned: tests/support/npmbins.py), the real daemon with a cache
directory of its own, the local TLS fake API. Each binary is first started once
so that the daemon locates its SSL_read/SSL_write (a scan of seconds,
off the poll thread) before the calls that are counted.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.support.agtapd import Agtapd
from tests.support import Reply, ToolCall
from tests.support.clients import CLIENTS_DIR
from tests.support.npmbins import BUN_RELEASES, bun, claude, claude_versions

SETTLE = 0.7
BUN_KEY = "sk-ant-agtap-test-bun-5d20"


@pytest.fixture(scope="module")
def bdaemon(tmp_path_factory, _need_root):
    tmp = tmp_path_factory.mktemp("agtapd-boringssl")
    d = Agtapd(tmp, "-v", env={"AGTAP_CACHE_DIR": str(tmp / "cache")})
    d.cache = tmp / "cache"
    yield d
    if d.proc.poll() is None:
        d.stop()


def located(daemon, binary, *argv: str) -> str:
    """Run the binary once, alive long enough for the daemon to open it through /proc,
    and wait until the daemon has located and probed it."""
    p = subprocess.Popen([str(binary), *argv], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        return daemon.wait_stderr(f"attached: {binary}")
    finally:
        p.kill()
        p.wait()


def one_event(daemon, pid: int) -> dict:
    evs = daemon.events(pid, n=1, timeout=15)
    time.sleep(SETTLE)
    evs = daemon.events(pid)
    assert len(evs) == 1, evs
    return evs[0]


# mode -> (scripted reply, expected event fields)
BUN_CASES = {
    "anthropic": dict(provider="anthropic", streaming=False, stop_reason="end_turn", model="claude-bun-test"),
    "anthropic-stream": dict(provider="anthropic", streaming=True, stop_reason="end_turn", model="claude-bun-test"),
    "openai": dict(provider="openai", streaming=False, stop_reason="stop", model="gpt-bun-test"),
    "openai-stream": dict(provider="openai", streaming=True, stop_reason="stop", model="gpt-bun-test"),
}


@pytest.mark.parametrize("version", BUN_RELEASES)
def test_bun_fetch_is_one_event_per_call(bdaemon, fake_api, certs, version):
    binary = bun(version)
    line = located(bdaemon, binary, str(CLIENTS_DIR / "bun_fetch.js"), "wait", "30")
    assert "BoringSSL located by ssl_lib.cc error sites" in line and "build-id" in line, line
    for mode, want in BUN_CASES.items():
        fake_api.reset()
        fake_api.script(Reply(text="Hi from the fake.", input_tokens=21, output_tokens=5))
        out = subprocess.run([str(binary), str(CLIENTS_DIR / "bun_fetch.js"), fake_api.base_url, mode],
                             capture_output=True, text=True, timeout=60,
                             env={"AGTAP_TEST_CA": str(certs.ca), "AGTAP_TEST_API_KEY": BUN_KEY,
                                  "PATH": "/usr/bin:/bin", "HOME": str(bdaemon.dir)})
        assert out.returncode == 0, out.stderr
        res = json.loads(out.stdout.splitlines()[-1])
        assert res["status"] == 200, res
        assert len(fake_api.wait_for(1)) == 1
        ev = one_event(bdaemon, res["pid"])
        for k, v in want.items():
            assert ev[k] == v, (mode, k, ev)
        assert ev["input_tokens"] == 21 and ev["output_tokens"] == 5, ev
        assert ev["kind"] == "llm_call" and ev["transport"] == "tls", ev
        assert ev["http_status"] == 200 and not ev["incomplete"], ev
        if ev["streaming"]:
            assert 0 < ev["ttft_ms"] <= ev["latency_ms"], ev


@pytest.mark.parametrize("version", BUN_RELEASES)
def test_a_connection_closed_mid_process_ends_the_call_there(bdaemon, fake_api, certs, version):
    """The server cuts an SSE stream and closes the connection; Bun frees its SSL and lives
    on. The call is reported when the connection ends (the SSL destructor is probed), while
    the process still runs, not when it exits."""
    binary = bun(version)
    line = located(bdaemon, binary, str(CLIENTS_DIR / "bun_fetch.js"), "wait", "30")
    assert "SSL destructor at" in line, line
    fake_api.reset()
    fake_api.script(Reply(text="Hi from the fake, cut short by the server.", input_tokens=21, output_tokens=5,
                          drop_after=2))
    proc = subprocess.Popen([str(binary), str(CLIENTS_DIR / "bun_fetch.js"), fake_api.base_url, "anthropic-stream",
                             "linger", "60"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={"AGTAP_TEST_CA": str(certs.ca), "AGTAP_TEST_API_KEY": BUN_KEY,
                                 "PATH": "/usr/bin:/bin", "HOME": str(bdaemon.dir)})
    try:
        res = json.loads(proc.stdout.readline())
        [ex] = fake_api.wait_for(1)
        assert ex.dropped, ex
        evs = bdaemon.events(res["pid"], n=1, timeout=15)
        assert proc.poll() is None, "the client exited: its end would not say whether the probe fired"
        assert len(evs) == 1, evs
        assert evs[0]["incomplete_reason"] == "connection_closed" and evs[0]["streaming"], evs[0]
        assert evs[0]["model"] == "claude-bun-test" and evs[0]["transport"] == "tls", evs[0]
    finally:
        proc.kill()
        proc.wait()


def test_a_call_made_during_the_first_scan_is_an_event_or_counted(tmp_path, fake_api, certs, _need_root):
    """A daemon that has never seen this Bun build (a cache of its own) scans it when it
    starts; the call Bun makes at once, on a connection it keeps, races the scan. Either
    the probes were live in time (one event) or the connection is counted as open before
    they were: never silently lost."""
    import re
    d = Agtapd(tmp_path, "-v", env={"AGTAP_CACHE_DIR": str(tmp_path / "cache")})
    binary = bun(BUN_RELEASES[-1])
    proc = None
    try:
        fake_api.reset()
        fake_api.script(Reply(text="Hi from the fake.", input_tokens=21, output_tokens=5))
        proc = subprocess.Popen([str(binary), str(CLIENTS_DIR / "bun_fetch.js"), fake_api.base_url, "anthropic",
                                 "linger", "60"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                env={"AGTAP_TEST_CA": str(certs.ca), "AGTAP_TEST_API_KEY": BUN_KEY,
                                     "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
        res = json.loads(proc.stdout.readline())
        assert res["status"] == 200, res
        assert "in " in d.wait_stderr(f"attached: {binary}")          # scanned, not from a cache
        time.sleep(2)
        evs = d.events(res["pid"])
        m = re.search(rf"{re.escape(str(binary))}.*: (\d+) process\(es\) exited and (\d+) TCP connection\(s\) "
                      "were open before its BoringSSL probes went live", d.stderr())
        counted = int(m.group(2)) if m else 0
        assert (len(evs), counted) in ((1, 0), (0, 1)), (evs, m and m.group(0))
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        d.stop()


CLAUDE_KEY = "sk-ant-agtap-test-claude-9e41"


def claude_env(fake_api, certs, home) -> dict[str, str]:
    """Claude Code pointed at the fake API only: no telemetry, updater, error reports or
    any other traffic to a real service."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "ANTHROPIC_BASE_URL": fake_api.base_url,
            "ANTHROPIC_API_KEY": CLAUDE_KEY, "NODE_EXTRA_CA_CERTS": str(certs.ca),
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1", "DISABLE_ERROR_REPORTING": "1", "DISABLE_BUG_COMMAND": "1",
            "CLAUDE_CODE_DISABLE_TERMINAL_TITLE": "1", "NO_PROXY": "127.0.0.1,localhost"}


# (case, replies scripted in order, stop reason of each call)
CLAUDE_CASES = [
    ("end_turn", [Reply(text="Hi from the fake.", input_tokens=21, output_tokens=5)], ["end_turn"]),
    ("tool_use", [Reply(tool_calls=[ToolCall("Glob", {"pattern": "*.txt"})], input_tokens=21, output_tokens=5),
                  Reply(text="There is one text file.", input_tokens=40, output_tokens=7)],
     ["tool_use", "end_turn"]),
]


@pytest.mark.parametrize("version", claude_versions())      # pinned, and the newest when setup had network
@pytest.mark.parametrize("case,replies,stops", CLAUDE_CASES, ids=[c[0] for c in CLAUDE_CASES])
def test_claude_code_print_mode_is_one_event_per_request(bdaemon, fake_api, certs, tmp_path, case, replies, stops,
                                                         version):
    binary = claude(version)
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("a file for Glob to find\n")
    env = claude_env(fake_api, certs, tmp_path)
    # `claude -p` without a prompt waits on stdin: alive while the daemon locates it
    line = located(bdaemon, binary, "-p")
    assert "BoringSSL located by ssl_lib.cc error sites" in line, line
    fake_api.reset()
    fake_api.script(*replies)
    proc = subprocess.Popen([str(binary), "-p", "List the text files here, then say hi."], cwd=work, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stdout + stderr
    assert replies[-1].text in stdout
    exchanges = fake_api.wait_for(len(stops))
    time.sleep(2)
    exchanges = fake_api.wait_for(0)            # everything the server saw, not a guessed count
    assert [e.json()["model"] for e in exchanges if e.path.startswith("/v1/messages")], exchanges
    evs = bdaemon.events(proc.pid, n=len(exchanges), timeout=20)
    time.sleep(SETTLE)
    evs = bdaemon.events(proc.pid)             # in the order the calls ended: one after the other here
    assert len(evs) == len(exchanges), (evs, exchanges)
    for ev, ex in zip(evs, exchanges):
        assert ev["model"] == ex.json()["model"], ev
        assert ev["provider"] == "anthropic" and ev["transport"] == "tls" and ev["http_status"] == 200, ev
        assert not ev["incomplete"], ev
    assert [e["stop_reason"] for e in evs] == stops
    assert [(e["input_tokens"], e["output_tokens"]) for e in evs] == \
        [(r.input_tokens, r.output_tokens) for r in replies]
    if case == "tool_use":
        assert "Glob" in evs[0]["tools"], evs[0]
    written = [p for p in bdaemon.dir.rglob("*") if p.is_file() and not p.name.endswith(".sock")]
    for p in written:
        assert CLAUDE_KEY.encode() not in p.read_bytes(), f"the API key reached {p}"


@pytest.mark.parametrize("version", claude_versions())
def test_claude_code_retry_after_a_cut_stream_is_a_call_of_its_own(bdaemon, fake_api, certs, tmp_path, version):
    """The server cuts the first stream; Claude Code frees that connection and retries on a
    new one, whose SSL* is usually the freed one's address. With the SSL destructor probed
    the first call ends when its connection does and the retry is a call of its own;
    without it (measured) the retry's bytes were read as the cut call's continuation
    (parse_error: bad_chunk_size) and the retry was lost."""
    binary = claude(version)
    work = tmp_path / "work"
    work.mkdir()
    line = located(bdaemon, binary, "-p")
    assert "SSL destructor at" in line, line
    fake_api.reset()
    fake_api.script(Reply(text="Hi from the fake, cut short.", input_tokens=21, output_tokens=5, drop_after=2),
                    Reply(text="Hi again from the fake.", input_tokens=22, output_tokens=6))
    proc = subprocess.Popen([str(binary), "-p", "Say hi."], cwd=work, env=claude_env(fake_api, certs, tmp_path),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0 and "Hi again from the fake." in stdout, stdout + stderr
    time.sleep(2)
    exchanges = fake_api.wait_for(0)
    assert [e.dropped for e in exchanges] == [True, False], exchanges
    evs = bdaemon.events(proc.pid, n=2, timeout=20)
    time.sleep(SETTLE)
    evs = bdaemon.events(proc.pid)
    assert [(e["incomplete_reason"] if e["incomplete"] else None) for e in evs] == ["connection_closed", None], evs
    assert evs[1]["stop_reason"] == "end_turn" and (evs[1]["input_tokens"], evs[1]["output_tokens"]) == (22, 6)


def test_no_boringssl_and_a_damaged_marker_are_refused_without_a_probe(bdaemon, tmp_path):
    import shutil
    plain = tmp_path / "plain-sleep"
    shutil.copyfile("/bin/sleep", plain)
    plain.chmod(0o755)
    damaged = tmp_path / "bun-damaged"
    shutil.copyfile(bun(BUN_RELEASES[-1]), damaged)
    data = damaged.read_bytes()
    at = data.index(b"/ssl/ssl_lib.cc\0")
    with open(damaged, "r+b") as f:
        f.seek(at)
        f.write(b"/ssl/ssl_lib.cX\0")   # BoringSSL's other paths remain: present, not located
    damaged.chmod(0o755)
    line, _ = bdaemon.not_probed(([damaged, CLIENTS_DIR / "bun_fetch.js", "wait", "30"],
                                  f"{damaged}: BoringSSL present, not located"),
                                 ([plain, "30"], f"no SSL symbols, no BoringSSL: {plain}"))
    assert "no ssl_lib.cc path string" in line and "not probed" in line, line
