"""Bench 9: who pays for the probes, per probe scope (issue 15).

Every process here uses a private copy of libssl (LD_LIBRARY_PATH), so other tracers on the
host do not probe what is measured. Two copies of the same bytes: A, named libssl.so.3 (the
agtap under test finds it in the maps of the processes using it and probes it as its scope
says), and B, reached through a symlink whose target is not named like a libssl (nobody
probes it: B is "untraced" while agtap runs).
(a) The mechanism alone (sslcalls: K SSL_write_ex + SSL_read_ex pairs in memory, ns per
    pair), an empty BPF program on entry and return of agtap's probe points in libssl,
    attached: nowhere; host-wide (pid -1); for another process (pid = the TLS server of
    (b)); for this bench's own process with inherit (the way agtap watches a process: the
    client, forked after the attach, has the probes); for this process without inherit
    (the client forked after the attach has none).
(b) Bench 2's bulk download, served by a TLS server that is no agent runtime (`openssl
    s_server -WWW`): K downloads of 1 MiB by a Python client (bench/clients/bulk.py).
    Paired: while one agtap runs (none; --probe-scope=host; process; process with a filter
    that leaves the client out, -c), the same downloads alternate between the A and the B
    side, so both see the same machine load: the server's CPU (server A vs server B, the
    client on B) and the client's (client A vs client B, the server on B).
(c) Bench 1's httpx client (N Anthropic calls) against bench/server.py (a Python TLS server:
    a runtime, let go at its first accepted connection), servers A and B alternating: the
    server's CPU A/B, and the client's CPU (on A: probed as an agent is) against the
    no-agtap configuration's.
Configurations interleaved per round, order rotated; CPU times are the processes' own
CPU clocks (ns), not /proc's 10 ms ticks.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from bench.harness import PY, REPO, Agtap, Server, client_env, proc_cpu_clock, ratios, run_measured, summary

MECH = ("none", "host", "pid_other", "pid_self_inherit", "pid_self_no_inherit")
DL = ("untraced", "agtap_host", "agtap_process", "agtap_process_filtered")
FLAGS = {"agtap_host": ("--probe-scope", "host"), "agtap_process": ("--probe-scope", "process"),
         "agtap_process_filtered": ("--probe-scope", "process", "-c", "agtap-nomatch")}


# what the daemon logs when a file's per-process probes cannot be had and go host-wide (scope.py):
# a run that logs it measured host scope, whatever its flags said
FALLBACK_LINES = ("host-wide from now on", "cannot fall back to host-wide")


def fallbacks(tracer: Agtap, lib: Path) -> list[str]:
    """The daemon's fallback lines about the bench's own probed copy (other files on the host may fall back)."""
    try:
        text = (tracer.dir / "stderr").read_text(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if any(f in line for f in FALLBACK_LINES) and str(lib) in line]


class Bare:
    """Empty programs on agtap's libssl probe points, attached as `how` says."""

    def __init__(self, work: Path, how: str, other_pid: int, lib: str):
        from agtap.capture import headers, probepoints
        from agtap.capture.elfsyms import symbol_addrs
        from agtap.capture.perfevent import open_event
        from agtap.capture.probetable import HOST, Probe, ProbeTable
        os.environ["BCC_KERNEL_SOURCE"] = headers.find_header_tree(str(work / "rt")).path
        from bcc import BPF
        self.b = BPF(text="int nothing(void *ctx) { return 0; }")
        syms = symbol_addrs(lib)
        probes = [p for pt in probepoints.plan(lib, syms) if pt.covers.endswith("_ex")
                  for p in (Probe(pt.addr, "nothing"), Probe(pt.addr, "nothing", True))]
        self.table = ProbeTable(self.b, 100)
        self.fds: list[int] = []
        if how == "host":
            self.table.attach(lib, probes, HOST)
        elif how == "pid_other":
            self.table.attach(lib, probes, other_pid)
        elif how == "pid_self_inherit":
            self.table.attach(lib, probes, os.getpid())            # inherit: the children forked from now on
        elif how == "pid_self_no_inherit":
            self.fds = [open_event(self.table._event(lib, p), os.getpid(), inherit=False) for p in probes]

    def stop(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.table.close()
        self.b.cleanup()


# data breakpoints of copy A this bench's own agtap puts, by configuration and role (the rest: another
# tracer on the host, which finds the copy named libssl.so.3 as this one does: that pair is disturbed)
EXPECTED = {("agtap_host", "server"): True, ("agtap_host", "client"): True, ("agtap_process", "client"): True}


def run_watching(argv: list[str], env: dict, seen) -> tuple[dict, int]:
    """Run a client that prints its own measurement (a JSON line); meanwhile read, every 50 ms, how many
    data breakpoints its memory holds (`seen(pid)`). (its JSON, the most seen at once)"""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO)
    most = 0
    while p.poll() is None:
        most = max(most, seen(p.pid))
        time.sleep(0.05)
    out, err = p.communicate()
    if p.returncode != 0:
        raise RuntimeError(f"{argv[:3]} exited {p.returncode}: {err.decode(errors='replace')[-2000:]}")
    return json.loads(out.decode().strip().splitlines()[-1]), most


def run(work: Path, quick: bool) -> dict:
    rounds = 2 if quick else 6
    reps = 1 if quick else 2        # A/B pairs per configuration per round
    k_ssl = 5000 if quick else 20000
    k_dl = 30 if quick else 100
    n_calls = 40 if quick else 200
    host_lib = os.path.realpath("/usr/lib/x86_64-linux-gnu/libssl.so.3")
    for d in ("libsym", "libnamed"):
        (work / d).mkdir(exist_ok=True)
    lib = str(work / "private-crypto.bin")
    shutil.copy(host_lib, lib)
    if not (work / "libsym" / "libssl.so.3").exists():
        os.symlink(lib, work / "libsym" / "libssl.so.3")
    named = work / "libnamed" / "libssl.so.3"
    shutil.copy(host_lib, named)
    side_lib = {"A": str(work / "libnamed"), "B": str(work / "libsym")}
    from agtap.capture import probepoints
    from agtap.capture.elfsyms import symbol_addrs
    from tests.support.breakpoints import breakpoints
    syms = symbol_addrs(str(named))
    data_points = [pt.addr for pt in probepoints.plan(str(named), syms)] + [syms["SSL_free"]]
    srv = {}
    for side in ("A", "B"):   # bench.server, one per side (its own certificates)
        os.environ["LD_LIBRARY_PATH"] = side_lib[side]
        srv[side] = Server(work / f"srv{side}")
    os.environ.pop("LD_LIBRARY_PATH", None)
    envs = {side: dict(client_env(srv[side].ca), LD_LIBRARY_PATH=side_lib[side]) for side in ("A", "B")}
    www = work / "www"
    (www / "bulk").mkdir(parents=True, exist_ok=True)
    (www / "bulk" / str(1 << 20)).write_bytes(os.urandom(1 << 20))
    ossl, port = {}, {}
    for side in ("A", "B"):
        ossl[side] = subprocess.Popen(
            ["openssl", "s_server", "-accept", "127.0.0.1:0", "-cert", str(srv[side].certs / "cert.pem"),
             "-key", str(srv[side].certs / "key.pem"), "-WWW"], cwd=www, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
            env=dict(os.environ, LD_LIBRARY_PATH=side_lib[side]))
        for line in ossl[side].stdout:   # "ACCEPT 127.0.0.1:PORT"
            if line.startswith("ACCEPT"):
                port[side] = int(line.rsplit(":", 1)[1])
                break
        threading.Thread(target=lambda p=ossl[side]: [None for _ in p.stdout], daemon=True).start()
    sslcalls = [PY, str(REPO / "bench/clients/sslcalls.py"), str(srv["B"].certs / "cert.pem"),
                str(srv["B"].certs / "key.pem"), srv["B"].ca, str(k_ssl)]

    def bulk(server: str) -> list[str]:
        return [PY, str(REPO / "bench/clients/bulk.py"), "127.0.0.1", str(port[server]), srv[server].ca, str(k_dl)]

    def httpx(server: str) -> list[str]:
        return [PY, str(REPO / "bench/clients/httpx_calls.py"), srv[server].url, srv[server].ca, str(n_calls)]

    samples: list[dict] = []
    try:
        run_measured(sslcalls, envs["B"])   # warm-up
        for side in ("A", "B"):
            run_measured(bulk(side), envs[side])
            run_measured(httpx(side), envs["A"])
        for r in range(rounds):
            for how in MECH[r % len(MECH):] + MECH[:r % len(MECH)]:
                bare = Bare(work, how, ossl["B"].pid, lib) if how != "none" else None
                try:
                    res, _ = run_measured(sslcalls, envs["B"])
                finally:
                    if bare:
                        bare.stop()
                samples.append({"part": "mechanism", "round": r, "config": how, "ns_per_iter": res["ns_per_iter"]})
            for cfg in DL[r % len(DL):] + DL[:r % len(DL)]:
                tracer = Agtap(work, *FLAGS[cfg]) if cfg != "untraced" else None
                try:
                    time.sleep(0.5)
                    for i in range(reps):
                        sides = ("A", "B") if (r + i) % 2 == 0 else ("B", "A")
                        for side in sides:    # the server's side; the client on B
                            s0 = proc_cpu_clock(ossl[side].pid)
                            run_measured(bulk(side), envs["B"])
                            samples.append({"part": "dl_server", "round": r, "config": cfg, "side": side,
                                            "server_cpu": proc_cpu_clock(ossl[side].pid) - s0,
                                            # data breakpoints in s_server A's memory now: this agtap's, or another
                                            # tracer's on the host (it finds the copy named libssl.so.3 too)
                                            "breakpoints_A": breakpoints(ossl["A"].pid, str(named), data_points)})
                        for side in sides:    # the client's side; the server on B
                            res, bp = run_watching(bulk("B"), envs[side],
                                                   lambda pid: breakpoints(pid, str(named), data_points))
                            samples.append({"part": "dl_client", "round": r, "config": cfg, "side": side,
                                            "wall": res["wall"], "cpu": res["cpu"], "breakpoints_A": bp})
                        for side in sides:    # bench 1: the client on A (an agent), the server's side
                            s0 = srv[side].cpu_clock()
                            res, _ = run_measured(httpx(side), envs["A"])
                            samples.append({"part": "calls", "round": r, "config": cfg, "side": side,
                                            "wall": res["wall"], "cpu": res["cpu"],
                                            "server_cpu": srv[side].cpu_clock() - s0,
                                            "breakpoints_A": sum(breakpoints(p, str(named), data_points)
                                                                 for p in srv["A"].pids)})
                    if tracer:
                        samples.append({"part": "log", "round": r, "config": cfg, "fallbacks": fallbacks(tracer, named)})
                finally:
                    if tracer:
                        tracer.stop()
    finally:
        for p in ossl.values():
            os.killpg(p.pid, signal.SIGTERM)
            p.wait()
        for x in srv.values():
            x.stop()
    out: dict = {"rounds": rounds, "reps": reps, "sslcalls_iters": k_ssl, "downloads": k_dl, "calls": n_calls,
                 "samples": samples, "results": {}}
    res: dict = {}
    m = {c: [s["ns_per_iter"] for s in samples if s["part"] == "mechanism" and s["config"] == c] for c in MECH}
    res["mechanism"] = {"ns_per_iter": {c: summary(v) for c, v in m.items()}}
    for c in MECH[1:]:
        res["mechanism"]["ns_per_iter"][f"{c}/none"] = summary(ratios(m[c], m["none"]))

    def pairs(part: str, cfg: str) -> list[tuple[dict, dict]]:
        xs = [s for s in samples if s["part"] == part and s["config"] == cfg]
        return list(zip([s for s in xs if s["side"] == "A"], [s for s in xs if s["side"] == "B"]))

    def disturbed(a: dict, part: str, cfg: str) -> bool:
        role = "client" if part == "dl_client" else "server"
        return bool(a.get("breakpoints_A")) != EXPECTED.get((cfg, role), False)

    def ab(part: str, metric: str) -> dict:
        """Per configuration: A/B of each pair (same round, same repetition order), A and B themselves;
        pairs whose A side carried breakpoints this agtap does not put there are left out (counted)."""
        out = {}
        for cfg in DL:
            ps = pairs(part, cfg)
            clean = [(a, b) for a, b in ps if part == "calls" or not disturbed(a, part, cfg)]
            a = [x[metric] for x, _ in clean]
            b = [y[metric] for _, y in clean]
            out[cfg] = {"A": summary(a), "B": summary(b), "A/B": summary(ratios(a, b)),
                        "A/B_all": summary(ratios([x[metric] for x, _ in ps], [y[metric] for _, y in ps])),
                        "pairs": len(ps), "disturbed": len(ps) - len(clean)}
        return out
    res["dl_server_cpu"] = ab("dl_server", "server_cpu")
    res["dl_client_cpu"] = ab("dl_client", "cpu")
    res["dl_client_wall"] = ab("dl_client", "wall")
    res["calls_server_cpu"] = ab("calls", "server_cpu")
    # the agent client's own cost (always on A): against the configuration without agtap
    calls_cpu = {c: [s["cpu"] for s in samples if s["part"] == "calls" and s["config"] == c] for c in DL}
    calls_wall = {c: [s["wall"] for s in samples if s["part"] == "calls" and s["config"] == c] for c in DL}
    res["calls_client"] = {c: {"cpu": summary(calls_cpu[c]), "wall": summary(calls_wall[c]),
                               "cpu/untraced": summary(ratios(calls_cpu[c], calls_cpu["untraced"])),
                               "wall/untraced": summary(ratios(calls_wall[c], calls_wall["untraced"]))}
                           for c in DL}
    res["data_points"] = len(data_points)
    res["breakpoints_A"] = {part: {c: [s["breakpoints_A"] for s in samples if s["part"] == part and s["config"] == c
                                       and s["side"] == "A"] for c in DL} for part in ("dl_server", "dl_client", "calls")}
    res["fallback_lines"] = sorted({line for s in samples for line in s.get("fallbacks", [])})
    out["results"] = res
    return out
