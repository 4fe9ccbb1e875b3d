"""Bench 1: LLM-shaped TLS overhead on the calling process.

A client makes N sequential Anthropic calls over one keep-alive TLS connection to
bench.server (half streamed: ~200 SSE events, one SSL_write each; half JSON), with
Python httpx and with Node's https. Configurations, interleaved in each round (order
rotated): untraced; agtap (full pipeline, JSONL to a file); bcc's sslsniff-bpfcc
(OpenSSL + node's OpenSSL, output discarded). Measured: the client's own wall time and
user+sys CPU for the N calls (set-up excluded), and the whole process from wait4.
A third "client", sslcalls, isolates the probes' own cost: K SSL_write_ex + SSL_read_ex
pairs between two in-memory TLS endpoints (no sockets), ns per pair; it also runs under
"bare_uprobes" (an empty BPF program on agtap's probe points for them) and
"bare_uprobes_exported" (the same on SSL_write_ex/SSL_read_ex themselves): see harness.BareUprobes.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.harness import (NODE, PY, REPO, Agtap, BareUprobes, Server, Sslsniff, client_env, ratios,
                           run_measured, summary)

CONFIGS = ("untraced", "agtap", "sslsniff")
CLIENTS = ("httpx", "node", "sslcalls")
BARE = ("bare_uprobes", "bare_uprobes_exported")


def run(work: Path, quick: bool) -> dict:
    rounds = 2 if quick else 5
    n = 40 if quick else 200
    k_ssl = 5000 if quick else 20000
    srv = Server(work)
    env = client_env(srv.ca)
    argv = {"httpx": [PY, str(REPO / "bench/clients/httpx_calls.py"), srv.url, srv.ca, str(n)],
            "node": [NODE, str(REPO / "bench/clients/node_calls.mjs"), srv.url, str(n)],
            # the probe's own cost: SSL_write_ex + SSL_read_ex pairs in memory, no sockets
            "sslcalls": [PY, str(REPO / "bench/clients/sslcalls.py"), str(srv.certs / "cert.pem"),
                         str(srv.certs / "key.pem"), srv.ca, str(k_ssl)]}
    samples: list[dict] = []
    try:
        # warm the page cache and the server once, untraced
        for c in CLIENTS:
            run_measured(argv[c], env)
        for r in range(rounds):
            order = CONFIGS[r % 3:] + CONFIGS[:r % 3]
            for cfg in order + BARE:
                tracer = None
                if cfg == "agtap":
                    tracer = Agtap(work)
                elif cfg == "sslsniff":
                    tracer = Sslsniff(work)
                elif cfg in BARE:
                    tracer = BareUprobes(work, at="exported" if cfg.endswith("_exported") else "agtap")
                time.sleep(0.3)
                for c in (CLIENTS if cfg not in BARE else ("sslcalls",)):
                    tcpu0 = tracer.cpu() if tracer else 0.0
                    scpu0 = srv.cpu()
                    res, proc = run_measured(argv[c], env)
                    s = {"round": r, "config": cfg, "client": c, "wall": res["wall"], "cpu": res["cpu"],
                         "proc_wall": proc["wall"], "proc_cpu": proc["cpu"], "pid": proc["pid"],
                         "server_cpu": srv.cpu() - scpu0,
                         "tracer_cpu": (tracer.cpu() - tcpu0) if tracer else 0.0}
                    if c == "sslcalls":
                        s["ns_per_iter"] = res["ns_per_iter"]
                    elif cfg == "agtap":
                        # the daemon may still be writing: wait until the count stops growing (1 s), at most 30 s
                        t_end, last, since = time.monotonic(), -1, time.monotonic()
                        while time.monotonic() - t_end < 30:
                            evs = [e for e in tracer.events() if e.get("pid") == proc["pid"]]
                            if len(evs) >= n + 1:
                                break
                            if len(evs) != last:
                                last, since = len(evs), time.monotonic()
                            elif time.monotonic() - since > 1:
                                break
                            time.sleep(0.1)
                        s["log_catch_up_s"] = time.monotonic() - t_end
                        s["events"] = len(evs)
                        s["events_complete"] = sum(1 for e in evs if not e.get("incomplete"))
                    samples.append(s)
                if cfg == "agtap":
                    s_lost = tracer.lost()
                    for s in samples[-len(CLIENTS):]:
                        s["lost_records"] = s_lost
                    tracer.stop()
                elif tracer:
                    tracer.stop()
    finally:
        srv.stop()
    out = {"calls_per_run": n, "rounds": rounds, "configs": list(CONFIGS), "samples": samples, "results": {}}
    for c in CLIENTS:
        by = {cfg: [s for s in samples if s["client"] == c and s["config"] == cfg] for cfg in CONFIGS}
        res = {}
        for metric in ("wall", "cpu", "proc_wall", "proc_cpu"):
            vals = {cfg: [s[metric] for s in by[cfg]] for cfg in CONFIGS}
            res[metric] = {cfg: summary(vals[cfg]) for cfg in CONFIGS}
            res[metric]["agtap/untraced"] = summary(ratios(vals["agtap"], vals["untraced"]))
            res[metric]["sslsniff/untraced"] = summary(ratios(vals["sslsniff"], vals["untraced"]))
            res[metric]["agtap/sslsniff"] = summary(ratios(vals["agtap"], vals["sslsniff"]))
        if c == "sslcalls":
            res["ns_per_iter"] = {cfg: summary([s["ns_per_iter"] for s in samples
                                                if s["client"] == c and s["config"] == cfg]) for cfg in CONFIGS + BARE}
            res["iters"] = k_ssl
            out["results"][c] = res
            continue
        res["tracer_cpu_per_call_ms"] = {cfg: summary([1000 * s["tracer_cpu"] / n for s in by[cfg]])
                                         for cfg in ("agtap", "sslsniff")}
        res["server_cpu_per_call_ms"] = {cfg: summary([1000 * s["server_cpu"] / n for s in by[cfg]])
                                         for cfg in CONFIGS}
        res["events_logged_per_run"] = [s.get("events") for s in by["agtap"]]
        res["log_catch_up_s"] = summary([s.get("log_catch_up_s", 0) for s in by["agtap"]])
        out["results"][c] = res
    return out
