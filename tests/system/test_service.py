"""agtap as a Debian service: installed from the .deb, run by systemd, used as root and as users.

Every test here needs the daemon (`agtap serve`) in the package: marked
`needs_daemon`. They are not skipped when it is missing: they fail, with the
journal of agtap.service in the message.

One container for the module (booting and installing once); the tests that
restart, kill or block the daemon come last, and each leaves it running.

    alice   member of group agtap: may read (status, calls), may not control
    bob     not in the group: may do nothing
"""

from __future__ import annotations

import json
import re
import time
import uuid

import pytest

from tests.support.nspawn import HERE, Container, Failed, make_cert
from tests.support.obs.prom import free_port

pytestmark = pytest.mark.needs_daemon

GUEST = "/usr/local/lib/agtap-test"
SECRET = "sk-ant-systest-SECRET-0123456789"


class Svc:
    def __init__(self, box: Container, port: int):
        self.box, self.port = box, port

    def main_pid(self) -> int:
        return int(self.box.sh("systemctl show -p MainPID --value agtap").stdout.strip())

    def restarts(self) -> int:
        return int(self.box.sh("systemctl show -p NRestarts --value agtap").stdout.strip())

    def wait_active(self, timeout: float = 120, not_pid: int | None = None) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.box.sh("systemctl is-active agtap", check=False).stdout.strip()
            if state == "active":
                pid = self.main_pid()
                if pid and pid != not_pid:
                    return pid
            time.sleep(0.3)
        raise Failed(f"agtap.service not active (again) within {timeout}s\n{self.box.journal_dump()}")

    def python_call(self, model: str, user: str = "root") -> int:
        """One call; returns the client's PID (as the container, and so the daemon, sees it)."""
        r = self.box.sh(f"python3 {GUEST}/client_call.py {self.port} /etc/agtap-test/cert.pem {model}",
                        user=user)
        out = json.loads(r.stdout)
        assert out["model"] == model
        return out["client_pid"]

    def curl_call(self, model: str) -> None:
        body = json.dumps({"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
        self.box.sh(f"curl -sS --http1.1 --cacert /etc/agtap-test/cert.pem "
                    f"-H 'content-type: application/json' -H 'x-api-key: {SECRET}' "
                    f"-H 'anthropic-version: 2023-06-01' --data '{body}' "
                    f"https://api.anthropic.com:{self.port}/v1/messages")

    def journal_entries(self, model: str) -> list[dict]:
        out = self.box.sh(f"journalctl -u agtap -o json --no-pager AGTAP_MODEL={model}", check=False).stdout
        return [json.loads(ln) for ln in out.splitlines() if ln.strip()]

    def wait_captured(self, model: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            e = self.journal_entries(model)
            if e:
                return e[0]
            time.sleep(0.3)
        raise Failed(f"call with model {model} not in `journalctl -u agtap` within {timeout}s\n{self.box.journal_dump()}")

    def ctl(self, args: str, user: str = "root") -> "subprocess.CompletedProcess":  # noqa: F821
        return self.box.sh(f"agtapctl {args}", user=user, check=False, timeout=60)


def new_model() -> str:
    return "claude-systest-" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def svc(rootfs, deb, tmp_path_factory):
    box = Container(rootfs, tmp_path_factory.mktemp("nspawn-svc"))
    try:
        box.boot()
        secs = box.install_deb(deb)
        print(f"\ninstalled {deb.name} in {secs:.1f}s")
        box.sh("useradd -m -s /bin/bash -G agtap alice && useradd -m -s /bin/bash bob")
        certdir = tmp_path_factory.mktemp("cert")
        key, crt = make_cert(certdir, "api.anthropic.com")
        box.put(crt, "/etc/agtap-test/cert.pem")
        box.put(key, "/etc/agtap-test/key.pem", 0o600)
        for f in ("fake_anthropic.py", "client_call.py", "listen_calls.py"):
            box.put(HERE / "guest" / f, f"{GUEST}/{f}")
        box.sh("echo '127.0.0.1 api.anthropic.com' >> /etc/hosts")
        port = free_port()
        box.sh(f"systemd-run --unit=fakeapi --quiet python3 {GUEST}/fake_anthropic.py {port} "
               f"/etc/agtap-test/cert.pem /etc/agtap-test/key.pem")
        box.wait_for(f"curl -s -o /dev/null --cacert /etc/agtap-test/cert.pem -X POST -d '{{}}' "
                     f"https://api.anthropic.com:{port}/v1/messages", what="fake API up")
        s = Svc(box, port)
        # the package already enabled and started it; this is what the README tells users to run
        r = box.sh("systemctl enable --now agtap", check=False, timeout=300)
        if r.returncode != 0:
            raise Failed(f"systemctl enable --now agtap: {r.stderr}\n{box.journal_dump()}")
        s.wait_active()
        yield s
    finally:
        box.stop()


def test_active_ready_and_on_the_bus(svc):
    box = svc.box
    assert box.sh("systemctl is-active agtap").stdout.strip() == "active"
    assert box.sh("systemctl is-enabled agtap").stdout.strip() == "enabled"
    # Type=notify: READY=1 came with a status line
    assert box.sh("systemctl show -p StatusText --value agtap").stdout.strip()
    assert box.sh("systemctl show -p WatchdogUSec --value agtap").stdout.strip() in ("30s", "30000000")
    box.sh("busctl status io.agtap.Agtap1 >/dev/null")


def test_call_in_journal_and_event_log_without_secrets(svc):
    box = svc.box
    model = new_model()
    pid = svc.python_call(model, user="bob")      # any process on the host is seen
    e = svc.wait_captured(model)
    # the daemon runs in the container's PID namespace: PIDs are the ones it sees there
    assert e["AGTAP_PID"] == str(pid)
    assert e["AGTAP_PROVIDER"] == "anthropic"
    # the Host header names Anthropic's API: the platform; the fake answers with id msg_systest
    assert (e["AGTAP_PLATFORM"], e["AGTAP_RESPONSE_ID"]) == ("anthropic", "msg_systest")
    assert e["AGTAP_INPUT_TOKENS"] == "12" and e["AGTAP_OUTPUT_TOKENS"] == "7"
    assert e["AGTAP_STOP_REASON"] == "end_turn"
    assert e["AGTAP_PROC"].startswith("python3")
    assert e["_SYSTEMD_UNIT"] == "agtap.service"
    assert model in e["MESSAGE"]
    box.wait_for(f"grep -q '{model}' /var/log/agtap/events.jsonl", what="event in events.jsonl")
    line = [ln for ln in box.sh("cat /var/log/agtap/events.jsonl").stdout.splitlines() if model in ln][-1]
    ev = json.loads(line)
    assert ev["provider"] == "anthropic" and ev["model"] == model
    assert (ev["platform"], ev["id"], ev["response_id"]) == ("anthropic", "msg_systest", "msg_systest")
    assert ev["event_id"] == e["AGTAP_EVENT_ID"] and ev["body_path"].endswith(f"/{ev['event_id']}.json")
    assert ev["input_tokens"] == 12 and ev["output_tokens"] == 7 and ev["stop_reason"] == "end_turn"
    assert box.sh(f"grep -rqF {SECRET} /var/log/agtap /var/lib/agtap", check=False).returncode == 1, \
        "the API key reached a file agtap wrote"


def test_a_call_made_after_subscribing_arrives_as_a_live_callcaptured_signal(svc):
    """The signal itself, not a re-read of earlier calls: alice (group agtap) subscribes first,
    then the call is made; her client prints only what CallCaptured brought."""
    box, model = svc.box, new_model()
    out = f"/tmp/listen-{model}.out"
    box.sh(f"systemd-run --unit=listen-{model} --uid=alice --property=StandardOutput=file:{out} "
           f"--property=StandardError=file:{out}.err python3 {GUEST}/listen_calls.py {model} 60")
    box.wait_for(f"grep -qx subscribed {out}", timeout=30, what="the listener subscribed")
    pid = svc.python_call(model)
    box.wait_for(f"grep -q {model} {out}", timeout=30, what=f"CallCaptured for {model}")
    ev = json.loads(box.sh(f"tail -n1 {out}").stdout)
    assert ev["model"] == model and ev["pid"] == pid and ev["provider"] == "anthropic", ev
    assert ev["input_tokens"] == 12 and ev["output_tokens"] == 7 and ev["stop_reason"] == "end_turn", ev


def test_status_for_root_and_group_member(svc):
    for user in ("root", "alice"):
        r = svc.ctl("status --json", user=user)
        assert r.returncode == 0, f"{user}: {r.stdout}{r.stderr}"
        assert isinstance(json.loads(r.stdout), dict)
        r = svc.ctl("status", user=user)
        assert r.returncode == 0 and r.stdout.strip()


def test_status_outside_group_is_access_denied(svc):
    r = svc.ctl("status --json", user="bob")
    assert r.returncode == 4, r.stdout + r.stderr
    assert "denied" in r.stderr.lower()


def test_file_modes_root_agtap(svc):
    box = svc.box
    svc.python_call(model := new_model())
    svc.wait_captured(model)
    box.wait_for(f"grep -q '{model}' /var/log/agtap/events.jsonl")
    out = box.sh("find /var/log/agtap /var/lib/agtap -printf '%y %m %u %g %p\\n'").stdout
    bad = []
    for ln in out.splitlines():
        kind, mode, u, g, p = ln.split(" ", 4)
        want = "750" if kind == "d" else "640"
        if (mode, u, g) != (want, "root", "agtap"):
            bad.append(ln)
    assert not bad, "expected dirs 0750 / files 0640 root:agtap:\n" + "\n".join(bad)
    assert "f 640 root agtap /var/log/agtap/events.jsonl" in out
    box.sh("head -c1 /var/log/agtap/events.jsonl >/dev/null", user="alice")
    assert box.sh("head -c1 /var/log/agtap/events.jsonl", user="bob", check=False).returncode != 0


def test_filter_needs_polkit_then_applies(svc):
    box = svc.box
    r = svc.ctl("filter --comm curl", user="alice")
    assert r.returncode == 4, f"group member may read, not control: {r.stdout}{r.stderr}"
    r = svc.ctl("filter --comm curl", user="root")
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        svc.curl_call(seen := new_model())        # positive control: curl is still captured
        svc.wait_captured(seen)
        svc.python_call(unseen := new_model())
        time.sleep(3)
        assert not svc.journal_entries(unseen), "python3 call captured despite filter --comm curl"
        assert box.sh(f"grep -c '{unseen}' /var/log/agtap/events.jsonl", check=False).stdout.strip() == "0"
    finally:
        r = svc.ctl("filter --clear", user="root")
    assert r.returncode == 0, r.stdout + r.stderr
    svc.python_call(again := new_model())
    svc.wait_captured(again)


def test_reload_keeps_the_process(svc):
    pid = svc.main_pid()
    svc.box.sh("systemctl reload agtap", timeout=120)
    assert svc.wait_active() == pid
    svc.python_call(model := new_model())
    svc.wait_captured(model)


def test_prometheus_metrics_with_debians_client_library(svc):
    """metrics_addr in the config file: /metrics served by Debian's python3-prometheus-client
    (0.16 on Debian 12, 0.21 on Debian 13) counts a real call."""
    box = svc.box
    port = free_port()
    box.sh(f"cp /etc/agtap/agtap.toml /root/agtap.toml.orig && "
           f"echo 'metrics_addr = \"127.0.0.1:{port}\"' >> /etc/agtap/agtap.toml")
    try:
        pid = svc.main_pid()
        box.sh("systemctl restart agtap", timeout=300)
        svc.wait_active(not_pid=pid)
        svc.python_call(model := new_model())
        svc.wait_captured(model)
        r = box.wait_for(f"curl -sf http://127.0.0.1:{port}/metrics | grep -F '{model}'", what="the call in /metrics")
        line = r'^agtap_request_duration_seconds_count\{[^}]*model="' + re.escape(model) + r'"[^}]*\} 1\.0$'
        assert re.search(line, r.stdout, re.M), r.stdout
    finally:
        box.sh("mv /root/agtap.toml.orig /etc/agtap/agtap.toml && systemctl restart agtap", timeout=300)
        svc.wait_active()


def test_tui_in_tmux_as_group_member(svc):
    box = svc.box
    box.sh("tmux new-session -d -s tui -x 200 -y 50 agtap-tui", user="alice")
    try:
        time.sleep(2)
        svc.python_call(model := new_model())
        svc.wait_captured(model)
        deadline = time.monotonic() + 20
        screen = ""
        while time.monotonic() < deadline:
            screen = box.sh("tmux capture-pane -p -t tui", user="alice", check=False).stdout
            if model[:20] in screen or "systest" in screen:
                break
            time.sleep(0.5)
        assert "systest" in screen, f"agtap-tui did not show the call:\n{screen}"
        box.sh("tmux send-keys -t tui q", user="alice")
        box.wait_for("! tmux has-session -t tui 2>/dev/null", user="alice", timeout=10, what="agtap-tui quits on q")
    finally:
        box.sh("tmux kill-server", user="alice", check=False)


def test_doctor_inside_the_container(svc):
    r = svc.box.sh("agtap doctor", check=False, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_reinstall_restarts_and_keeps_config_and_data(svc, deb):
    """What an upgrade does (dh_installsystemd: restart in postinst); conffile edits survive."""
    box = svc.box
    box.sh("sed -i 's/^#max_log_files = 5$/max_log_files = 6/' /etc/agtap/agtap.toml")
    pid = svc.main_pid()
    before = box.sh("wc -l < /var/log/agtap/events.jsonl").stdout.strip()
    box.sh(f"apt-get -q -o Dpkg::Options::=--force-confold install -y --reinstall /root/{deb.name}", timeout=600)
    svc.wait_active(not_pid=pid)
    assert "max_log_files = 6" in box.sh("cat /etc/agtap/agtap.toml").stdout
    assert int(box.sh("wc -l < /var/log/agtap/events.jsonl").stdout) >= int(before)
    svc.python_call(m := new_model())
    svc.wait_captured(m)


def test_restart_and_kill9_recover(svc):
    box = svc.box
    pid = svc.main_pid()
    box.sh("systemctl restart agtap", timeout=300)
    pid2 = svc.wait_active(not_pid=pid)
    svc.python_call(m1 := new_model())
    svc.wait_captured(m1)
    n = svc.restarts()
    box.sh(f"kill -9 {pid2}")
    pid3 = svc.wait_active(not_pid=pid2)         # Restart=on-failure
    assert svc.restarts() == n + 1
    svc.python_call(m2 := new_model())
    svc.wait_captured(m2)
    assert pid3 != pid2


def test_watchdog_restarts_a_stopped_daemon(svc):
    """SIGSTOP freezes the daemon (no pings); the watchdog (6 s here) kills it, systemd restarts it.
    That its pings come from the event loop, so a blocked loop stops them too, is shown in
    tests/unit/test_service_daemon.py (only the loop's thread stopped)."""
    box = svc.box
    box.write("/etc/systemd/system/agtap.service.d/50-test-watchdog.conf", "[Service]\nWatchdogSec=6s\n")
    try:
        box.sh("systemctl daemon-reload && systemctl restart agtap", timeout=300)
        pid = svc.wait_active()
        n = svc.restarts()
        since = box.sh("date '+%Y-%m-%d %H:%M:%S'").stdout.strip()
        box.sh(f"kill -STOP {pid}")
        t0 = time.monotonic()
        pid2 = svc.wait_active(timeout=90, not_pid=pid)
        took = time.monotonic() - t0
        assert svc.restarts() == n + 1
        log = box.sh(f"journalctl -u agtap --no-pager --since '{since}'").stdout
        assert re.search(r"[Ww]atchdog timeout", log), log
        assert took < 40, f"restart took {took:.0f}s: the watchdog (6s) should have fired, not a stop timeout"
        svc.python_call(m := new_model())
        svc.wait_captured(m)
        print(f"\nwatchdog: blocked pid {pid} killed and replaced by {pid2} in {took:.1f}s")
    finally:
        box.sh("rm -f /etc/systemd/system/agtap.service.d/50-test-watchdog.conf && systemctl daemon-reload "
               "&& systemctl restart agtap", check=False, timeout=300)
        svc.wait_active()


def test_a_refused_bpf_program_is_one_line_and_no_restart_loop(svc):
    """The real verifier refusing a program (copy_len's mask widened to twice the destination,
    in a copy of the installed sources): one journal line naming the program, the verifier's
    reason and the versions to report; exit status 3; systemd does not restart it."""
    box = svc.box
    box.sh("rm -rf /etc/agtap-test/bpf && cp -r /usr/share/agtap/bpf /etc/agtap-test/bpf && "
           "sed -i 's/& (size - 1)) + 1;/\\& (2 * size - 1)) + 1;/' /etc/agtap-test/bpf/common.h && "
           "grep -qF '& (2 * size - 1)) + 1;' /etc/agtap-test/bpf/common.h")
    box.write("/etc/systemd/system/agtap.service.d/50-test-refused.conf",
              "[Service]\nEnvironment=AGTAP_BPF_DIR=/etc/agtap-test/bpf\n")
    try:
        since = box.sh("date '+%Y-%m-%d %H:%M:%S'").stdout.strip()
        n = svc.restarts()
        box.sh("systemctl daemon-reload && systemctl restart agtap", check=False, timeout=300)
        box.wait_for("systemctl is-failed agtap", timeout=180, what="agtap.service failed")
        time.sleep(5)   # RestartSec=2s: a restart would have happened by now
        show = box.sh("systemctl show -p ExecMainStatus -p NRestarts -p ActiveState agtap").stdout
        assert "ExecMainStatus=3" in show and f"NRestarts={n}" in show and "ActiveState=failed" in show, show
        log = box.sh(f"journalctl -u agtap --no-pager -o cat --since '{since}'").stdout
        refusals = [ln for ln in log.splitlines() if "BPF verifier refused program" in ln]
        assert len(refusals) == 1, log[-3000:]
        line = refusals[0]
        m = re.search(r"refused program (\w+): (.+?) — ", line)
        assert m, line
        bpf_log = box.sh("cat /var/log/agtap/bpf-load.log").stdout
        for reason in m.group(2).split(" | "):    # the verifier's own words, from its log
            assert reason in [ln.strip() for ln in bpf_log.splitlines()] and not re.match(r"\d+: ", reason), (reason, line)
        assert re.search(r"please report it .* with BCC 0\.\d+\S*, LLVM \d+, kernel \S+", line), line
        assert "/var/log/agtap/bpf-load.log" in line
        assert not re.search(r"^\d+: \(", log, re.M), "the verifier's instructions reached the journal"
        print(f"\n{box.release}: {line}")
    finally:
        box.sh("rm -f /etc/systemd/system/agtap.service.d/50-test-refused.conf && systemctl daemon-reload "
               "&& systemctl reset-failed agtap; systemctl restart agtap", check=False, timeout=300)
        svc.wait_active()
