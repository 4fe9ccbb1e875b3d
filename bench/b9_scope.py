"""Bench 9: who pays for the probes, per probe scope (issue 15).

Every process here uses a private copy of libssl (LD_LIBRARY_PATH), so other tracers on the
host do not probe what is measured. (a) The mechanism alone (sslcalls: K SSL_write_ex + SSL_read_ex pairs in memory, ns per
    pair), an empty BPF program on entry and return of agtap's probe points in libssl,
    attached: nowhere; host-wide (pid -1); for another process (pid = the TLS server of
    (b)); for this bench's own process with inherit (the way agtap watches a process: the
    client, forked after the attach, has the probes); for this process without inherit
    (the client forked after the attach has none).
(b) A TLS server that is not an agent runtime (`openssl s_server -WWW`) serving K
    downloads of 1 MiB to a Python client (bench/clients/bulk.py): untraced; agtap
    --probe-scope=host; agtap --probe-scope=process; process scope with a filter that
    leaves the client out (-c). The client's wall time and the server's CPU.
(c) Bench 1's httpx client (N Anthropic calls to bench.server, a Python TLS server):
    untraced; agtap host; agtap process. The client's wall time and CPU, the server's CPU.
Configurations interleaved per round, order rotated.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from bench.harness import PY, REPO, Agtap, Server, client_env, ratios, run_measured, summary

MECH = ("none", "host", "pid_other", "pid_self_inherit", "pid_self_no_inherit")
DL = ("untraced", "agtap_host", "agtap_process", "agtap_process_filtered")
CALLS = ("untraced", "agtap_host", "agtap_process")
FLAGS = {"agtap_host": ("--probe-scope", "host"), "agtap_process": ("--probe-scope", "process"),
         "agtap_process_filtered": ("--probe-scope", "process", "-c", "agtap-nomatch")}


def proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        v = f.read().rsplit(")", 1)[1].split()
    return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")


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


def run(work: Path, quick: bool) -> dict:
    rounds = 2 if quick else 5
    k_ssl = 5000 if quick else 20000
    k_dl = 30 if quick else 100
    n_calls = 40 if quick else 200
    # Private copies of libssl, so that what is measured is this bench's probes only: a copy reached
    # through a symlink not named like a libssl (no tracer finds it: part a, probed directly), and one
    # named libssl.so.3 (found by the agtap under test through the maps of the processes using it).
    host_lib = os.path.realpath("/usr/lib/x86_64-linux-gnu/libssl.so.3")
    for d in ("libsym", "libnamed"):
        (work / d).mkdir(exist_ok=True)
    lib = str(work / "private-crypto.bin")
    shutil.copy(host_lib, lib)
    if not (work / "libsym" / "libssl.so.3").exists():
        os.symlink(lib, work / "libsym" / "libssl.so.3")
    shutil.copy(host_lib, work / "libnamed" / "libssl.so.3")
    os.environ["LD_LIBRARY_PATH"] = str(work / "libnamed")     # the servers and clients of parts b and c
    srv = Server(work)
    env = client_env(srv.ca)
    env_a = dict(env, LD_LIBRARY_PATH=str(work / "libsym"))
    www = work / "www"
    (www / "bulk").mkdir(parents=True, exist_ok=True)
    (www / "bulk" / str(1 << 20)).write_bytes(os.urandom(1 << 20))
    ossl = subprocess.Popen(["openssl", "s_server", "-accept", "127.0.0.1:0", "-cert", str(srv.certs / "cert.pem"),
                             "-key", str(srv.certs / "key.pem"), "-WWW"], cwd=www, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    port = None
    for line in ossl.stdout:   # "ACCEPT 127.0.0.1:PORT"
        if line.startswith("ACCEPT"):
            port = int(line.rsplit(":", 1)[1])
            break
    threading.Thread(target=lambda: [None for _ in ossl.stdout], daemon=True).start()   # keep it from blocking
    sslcalls = [PY, str(REPO / "bench/clients/sslcalls.py"), str(srv.certs / "cert.pem"), str(srv.certs / "key.pem"),
                srv.ca, str(k_ssl)]
    bulk = [PY, str(REPO / "bench/clients/bulk.py"), "127.0.0.1", str(port), srv.ca, str(k_dl)]
    httpx = [PY, str(REPO / "bench/clients/httpx_calls.py"), srv.url, srv.ca, str(n_calls)]
    samples: list[dict] = []
    try:
        run_measured(sslcalls, env_a)   # warm-up
        for argv in (bulk, httpx):
            run_measured(argv, env)
        for r in range(rounds):
            for how in MECH[r % len(MECH):] + MECH[:r % len(MECH)]:
                bare = Bare(work, how, ossl.pid, lib) if how != "none" else None
                try:
                    res, _ = run_measured(sslcalls, env_a)
                finally:
                    if bare:
                        bare.stop()
                samples.append({"part": "mechanism", "round": r, "config": how, "ns_per_iter": res["ns_per_iter"]})
            for cfg in DL[r % len(DL):] + DL[:r % len(DL)]:
                tracer = Agtap(work, *FLAGS[cfg]) if cfg != "untraced" else None
                try:
                    time.sleep(0.5)
                    s0 = proc_cpu(ossl.pid)
                    res, _ = run_measured(bulk, env)
                    samples.append({"part": "download", "round": r, "config": cfg, "wall": res["wall"],
                                    "cpu": res["cpu"], "server_cpu": proc_cpu(ossl.pid) - s0})
                finally:
                    if tracer:
                        tracer.stop()
            for cfg in CALLS[r % len(CALLS):] + CALLS[:r % len(CALLS)]:
                tracer = Agtap(work, *FLAGS[cfg]) if cfg != "untraced" else None
                try:
                    time.sleep(0.5)
                    s0 = srv.cpu()
                    res, _ = run_measured(httpx, env)
                    samples.append({"part": "calls", "round": r, "config": cfg, "wall": res["wall"],
                                    "cpu": res["cpu"], "server_cpu": srv.cpu() - s0})
                finally:
                    if tracer:
                        tracer.stop()
    finally:
        os.killpg(ossl.pid, signal.SIGTERM)
        ossl.wait()
        srv.stop()
        os.environ.pop("LD_LIBRARY_PATH", None)
    out: dict = {"rounds": rounds, "sslcalls_iters": k_ssl, "downloads": k_dl, "calls": n_calls,
                 "samples": samples, "results": {}}

    def part(name: str, configs: tuple, metrics: tuple) -> dict:
        res = {}
        for m in metrics:
            vals = {c: [s[m] for s in samples if s["part"] == name and s["config"] == c] for c in configs}
            res[m] = {c: summary(v) for c, v in vals.items()}
            for c in configs[1:]:
                res[m][f"{c}/{configs[0]}"] = summary(ratios(vals[c], vals[configs[0]]))
        return res
    out["results"]["mechanism"] = part("mechanism", MECH, ("ns_per_iter",))
    out["results"]["download"] = part("download", DL, ("wall", "cpu", "server_cpu"))
    out["results"]["calls"] = part("calls", CALLS, ("wall", "cpu", "server_cpu"))
    return out
