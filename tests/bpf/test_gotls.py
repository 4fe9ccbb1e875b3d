"""Go programs: TLS plaintext at crypto/tls.(*Conn).Write/Read, stripped binaries included.

A Go LLM client (tests/go/llmclient: net/http only, like a Go service without an SDK) built
at test time by Debian 12's Go 1.19 and Debian 13's Go 1.24 (tests/support/gobuild.py),
each with its symbol table and stripped (-ldflags="-s -w"), against the local TLS fake API
(HTTP/1.1 only: it offers no h2). The daemon finds the functions at exec, whatever the
binary is called, and probes them; every call must be one event with the scripted values.
Each client waits on stdin until the daemon says it probed the binary: a process's first
call races the locating otherwise (see docs/DESIGN.md, Go).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest

from tests.support import Reply
from tests.support.agtapd import Agtapd
from tests.support.gobuild import go_binary

SETTLE = 0.7
GO_KEY = "sk-ant-agtap-test-go-3c51"
BUILDS = {   # id -> (release whose Go builds it, stripped)
    "go1.19": ("bookworm", False), "go1.19-stripped": ("bookworm", True),
    "go1.24": ("trixie", False), "go1.24-stripped": ("trixie", True),
}
# mode -> what the event must say (the reply's tokens and text are checked for every mode)
MODES = {
    "anthropic": dict(provider="anthropic", model="claude-go-test", streaming=False, stop_reason="end_turn"),
    "anthropic-stream": dict(provider="anthropic", model="claude-go-test", streaming=True, stop_reason="end_turn"),
    "openai-chat": dict(provider="openai", model="gpt-go-test", streaming=False, stop_reason="stop"),
    "openai-chat-stream": dict(provider="openai", model="gpt-go-test", streaming=True, stop_reason="stop"),
    "gemini": dict(provider="google", model="gemini-go-test", streaming=False, stop_reason="STOP"),
    "gemini-stream": dict(provider="google", model="gemini-go-test", streaming=True, stop_reason="STOP"),
}


@pytest.fixture(scope="module")
def gdaemon(tmp_path_factory, _need_root):
    tmp = tmp_path_factory.mktemp("agtapd-go")
    d = Agtapd(tmp, "-v", env={"AGTAP_CACHE_DIR": str(tmp / "cache")})
    yield d
    if d.proc.poll() is None:
        d.stop()


@pytest.fixture(scope="module")
def builds():
    """builds[id]: that build of the client, built (or taken from the cache) when first asked for."""
    class Builds(dict):
        def __missing__(self, b):
            rel, stripped = BUILDS[b]
            self[b] = go_binary("llmclient", release=rel, stripped=stripped)
            return self[b]
    return Builds()


def go_client(daemon, binary, api, certs, modes: list[str], calls: int, *flags: str) -> tuple[dict, list[dict]]:
    """Run the client: its JSON result, and its events once `calls` have come and no more for
    SETTLE seconds (a duplicate would show). The client starts calling once the daemon has
    probed its binary, and stays alive until its events are in (so its /proc entry is read)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(daemon.dir), "AGTAP_TEST_CA": str(certs.ca),
           "AGTAP_TEST_API_KEY": GO_KEY}
    p = subprocess.Popen([str(binary), "-url", api.base_url, "-mode", ",".join(modes), "-wait", *flags],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert json.loads(p.stdout.readline())["waiting"]
        daemon.wait_stderr(f"attached: {binary} (go1.", timeout=60)
        p.stdin.write("go\n")
        p.stdin.flush()
        line = p.stdout.readline()
        assert line, p.stderr.read()
        res = json.loads(line)
        daemon.events(res["pid"], n=calls, timeout=20)
        time.sleep(SETTLE)
        evs = daemon.events(res["pid"])
        p.stdin.close()
        assert p.wait(30) == 0, p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return res, evs


def stored(ev: dict) -> dict:
    with open(ev["body_path"]) as f:
        return json.load(f)


@pytest.mark.parametrize("build", list(BUILDS))
def test_every_build_is_one_event_per_call_with_the_scripted_values(gdaemon, builds, fake_api, certs, build):
    binary = builds[build]
    modes = list(MODES)
    fake_api.reset()
    replies = [Reply(text=f"Hi from the fake to {m}.", input_tokens=20 + i, output_tokens=5 + i)
               for i, m in enumerate(modes)]
    fake_api.script(*replies)
    res, evs = go_client(gdaemon, binary, fake_api, certs, modes, len(modes))
    assert [r["status"] for r in res["results"]] == [200] * len(modes), res
    assert len(fake_api.wait_for(len(modes))) == len(modes)
    assert len(evs) == len(modes), evs
    for mode, reply, r, ev in zip(modes, replies, res["results"], evs):   # one call after the other
        assert r["text"] == reply.text, r                                  # what the client parsed
        for k, v in MODES[mode].items():
            assert ev[k] == v, (build, mode, k, ev)
        assert (ev["input_tokens"], ev["output_tokens"]) == (reply.input_tokens, reply.output_tokens), ev
        assert ev["kind"] == "llm_call" and ev["transport"] == "tls" and ev["http_status"] == 200, ev
        assert ev["server_address"] == "127.0.0.1" and not ev["incomplete"], ev
        assert ev["exe"] == str(binary) and ev["proc"] == "llmclient", ev
        if ev["streaming"]:
            assert 0 < ev["ttft_ms"] <= ev["latency_ms"], ev
        body = stored(ev)
        assert r["marker"] in json.dumps(body["request"]["body"]), (mode, body["request"])
    log = gdaemon.stderr()
    how = "symbol table" if not BUILDS[build][1] else ".gopclntab (no symbol table)"
    line = next(x for x in log.splitlines() if f"attached: {binary} (" in x)
    assert f"crypto/tls (*Conn) found in the {how}" in line, line
    written = [p for p in gdaemon.dir.rglob("*") if p.is_file() and not p.name.endswith(".sock")]
    for p in written:
        assert GO_KEY.encode() not in p.read_bytes(), f"the API key reached {p}"


@pytest.mark.parametrize("build", ["go1.19", "go1.24"])
def test_reads_whose_stack_moves_during_the_call_are_copied_from_where_the_buffer_went(
        gdaemon, builds, fake_api, certs, build):
    """Each Read of the raw client is made by a new goroutine, 0-63 frames deep, into a buffer
    on its own stack: for many of them the runtime copies the stack to a bigger one during
    Read (the client counts them). A probe that read the buffer where it was at entry would
    record stale bytes; a uretprobe would have crashed the program."""
    calls = 3
    fake_api.reset()
    fake_api.script(*[Reply(text=" ".join(f"w{i}x{k}" for k in range(40)), input_tokens=30 + i, output_tokens=40)
                      for i in range(calls)])
    res, evs = go_client(gdaemon, builds[build], fake_api, certs, ["raw-stream"], calls, "-n", str(calls),
                         "-depth", "200")
    assert res["stack_moves"] > 0, "no Read saw its stack move: the test would prove nothing"
    exchanges = fake_api.wait_for(calls)
    assert len(evs) == calls, evs
    for i, (r, ev) in enumerate(zip(res["results"], evs)):
        assert r["text"] == " ".join(f"w{i}x{k}" for k in range(40)), r
        assert (ev["input_tokens"], ev["output_tokens"], ev["stop_reason"]) == (30 + i, 40, "end_turn"), ev
        assert ev["streaming"] and not ev["incomplete"] and ev["http_status"] == 200, ev
        # every byte the server sent, as the tracer stored it (de-chunked, the SSE text)
        assert stored(ev)["response"]["body"] == exchanges[i].response_body.decode(), i


def test_fifty_goroutines_sharing_one_client_each_get_their_own_event(gdaemon, builds, fake_api, certs):
    n = 50
    fake_api.reset()
    fake_api.script(*[Reply(text=f"reply{i}", input_tokens=100 + i, output_tokens=200 + i) for i in range(n)])
    res, evs = go_client(gdaemon, builds["go1.19"], fake_api, certs, ["anthropic-stream"], n, "-parallel", str(n))
    assert [r["status"] for r in res["results"]] == [200] * n, res
    exchanges = fake_api.wait_for(n)
    by_marker = {ex.json()["messages"][0]["content"].split()[-1]: ex for ex in exchanges}
    assert len(by_marker) == n
    assert len(evs) == n, f"{len(evs)} events for {n} calls"
    seen = set()
    for ev in evs:
        body = stored(ev)
        marker = body["request"]["body"]["messages"][0]["content"].split()[-1]
        ex = by_marker[marker]              # the exchange that carried this request
        assert (ev["input_tokens"], ev["output_tokens"]) == (ex.reply.input_tokens, ex.reply.output_tokens), ev
        assert body["response"]["body"] == ex.response_body.decode(), marker   # not another's answer
        assert not ev["incomplete"], ev
        seen.add(marker)
    assert seen == set(by_marker)


def test_go_without_tls_and_a_stripped_non_go_binary_are_left_alone(gdaemon, tmp_path):
    notls = go_binary("notls")
    plain = tmp_path / "stripped-sleep"
    shutil.copyfile("/bin/sleep", plain)
    subprocess.run(["strip", "--strip-all", str(plain)], check=True)
    plain.chmod(0o755)
    line, _ = gdaemon.not_probed(([notls, "30"], f"Go executable {notls}: not probed:"),
                                 ([plain, "30"], f"no SSL symbols, no BoringSSL: {plain}"))
    assert "no crypto/tls use" in line and "go1.19" in line, line


def test_http2_calls_are_captured_too(gdaemon, builds, certs):
    """net/http speaks HTTP/2 to a server that offers it: the preface marks the *tls.Conn
    (the kernel side shared with OpenSSL), and the HTTP/2 decoder makes the calls."""
    from tests.support import FakeApi
    modes = ["anthropic-stream", "openai-chat"]
    with FakeApi(certs, http2=True) as api:
        api.script(Reply(text="Hi over h2.", input_tokens=41, output_tokens=4),
                   Reply(text="Hi again over h2.", input_tokens=42, output_tokens=5))
        res, evs = go_client(gdaemon, builds["go1.19"], api, certs, modes, len(modes), "-h2")
    assert [(r["status"], r["proto"]) for r in res["results"]] == [(200, "HTTP/2.0")] * 2, res
    assert len(evs) == 2, evs
    for ev, (provider, tokens) in zip(evs, [("anthropic", (41, 4)), ("openai", (42, 5))]):
        assert ev["provider"] == provider and (ev["input_tokens"], ev["output_tokens"]) == tokens, ev
        assert ev["http_version"] == "2" and ev["transport"] == "tls" and not ev["incomplete"], ev
        assert ev["server_address"] == "127.0.0.1", ev


def test_a_go_program_running_before_the_daemon_starts_is_probed_at_start(agtapd, builds, fake_api, certs):
    binary = builds["go1.24-stripped"]
    env = {"PATH": "/usr/bin:/bin", "AGTAP_TEST_CA": str(certs.ca), "AGTAP_TEST_API_KEY": GO_KEY}
    p = subprocess.Popen([str(binary), "-url", fake_api.base_url, "-mode", "openai-chat-stream", "-wait"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert json.loads(p.stdout.readline())["waiting"]
        d = agtapd("-v")                                 # starts after the client: found by the start-up scan
        line = d.wait_stderr(f"attached: {binary} (go1.24", timeout=60)
        assert ".gopclntab (no symbol table)" in line, line
        fake_api.reset()
        fake_api.script(Reply(text="Seen from the start.", input_tokens=7, output_tokens=3))
        p.stdin.write("go\n")
        p.stdin.flush()
        res = json.loads(p.stdout.readline())
        d.events(res["pid"], n=1, timeout=20)
        time.sleep(SETTLE)
        [ev] = d.events(res["pid"])
        assert (ev["provider"], ev["input_tokens"], ev["output_tokens"]) == ("openai", 7, 3), ev
        assert ev["streaming"] and not ev["incomplete"], ev
    finally:
        p.kill()
        p.wait()


def test_a_go_program_run_for_the_first_time_is_held_at_exec_and_its_first_call_is_seen(gdaemon, builds, fake_api,
                                                                                       certs, tmp_path):
    """No -wait: a copy of the client (a file no agtap has seen: a new inode) calls the moment it
    starts. The open gate holds its exec while the daemon locates its crypto/tls and attaches,
    so that first call is an event (without the gate it ran unprobed: go_unprobed_*)."""
    fresh = tmp_path / "llmclient"
    shutil.copy(builds["go1.19"], fresh)
    fake_api.reset()
    fake_api.script(Reply(text="Hi, first run.", input_tokens=31, output_tokens=7))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AGTAP_TEST_CA": str(certs.ca),
           "AGTAP_TEST_API_KEY": GO_KEY}
    t0 = time.monotonic()
    p = subprocess.run([str(fresh), "-url", fake_api.base_url, "-mode", "anthropic"], capture_output=True, text=True,
                       env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout.splitlines()[-1])
    assert [r["status"] for r in res["results"]] == [200], res
    [ev] = gdaemon.events(res["pid"], n=1, timeout=20)
    assert (ev["input_tokens"], ev["output_tokens"]) == (31, 7), ev
    assert not ev["incomplete"], ev
    log = gdaemon.stderr()
    assert f"watching pid {res['pid']} (executable)" in log, log[-3000:]
    assert time.monotonic() - t0 < 30
