"""Bench 2: traffic agtap must not care about.

(a) bulk HTTPS: K sequential GET /bulk/1MiB over keep-alive (Python http.client). agtap
    sees the request line "GET /bulk/..." on SSL_write; the pipeline finds no provider,
    marks the connection ignored, and the kernel stops copying it until the next request
    line — but the uprobes still fire on every SSL_read.
(b) a pipe: `dd if=/dev/zero bs=64k count=16384 | cat > /dev/null` (1 GiB); the syscall
    tracepoints fire on every read/write, the buffer's first bytes are not JSON-RPC.
Configurations untraced / agtap interleaved (A B A B, order alternating per round). Then
one pass under `agtap record` to count what reached userspace (items, payload bytes).
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.harness import PY, REPO, Agtap, Recorder, Server, client_env, ratios, run_measured, summary

PIPE_CMD = "dd if=/dev/zero bs=64k count=16384 status=none | cat > /dev/null"


def run(work: Path, quick: bool) -> dict:
    rounds = 3 if quick else 6
    k = 100 if quick else 400
    srv = Server(work)
    env = client_env(srv.ca)
    work_argv = {"bulk": [PY, str(REPO / "bench/clients/bulk.py"), "127.0.0.1", str(srv.port), srv.ca, str(k)],
                 "pipe": ["/bin/bash", "-c", PIPE_CMD]}
    samples = []
    try:
        for w in work_argv:   # warm-up
            run_measured(work_argv[w], env, parse=(w == "bulk"))
        for r in range(rounds):
            order = ("untraced", "agtap") if r % 2 == 0 else ("agtap", "untraced")
            for cfg in order:
                tracer = Agtap(work) if cfg == "agtap" else None
                time.sleep(0.3)
                for w, argv in work_argv.items():
                    c0 = tracer.cpu() if tracer else 0.0
                    res, proc = run_measured(argv, env, parse=(w == "bulk"))
                    s = {"round": r, "config": cfg, "workload": w, "proc_wall": proc["wall"],
                         "proc_cpu": proc["cpu"], "tracer_cpu": (tracer.cpu() - c0) if tracer else 0.0}
                    if w == "bulk":
                        s.update(wall=res["wall"], cpu=res["cpu"], bytes=res["bytes"])
                    else:
                        s.update(wall=proc["wall"], cpu=proc["cpu"], bytes=1 << 30)
                    samples.append(s)
                if tracer:
                    lost = tracer.lost()
                    for s in samples[-len(work_argv):]:
                        s["lost_records"] = lost
                    tracer.stop()
        # what reached userspace: one recorded pass per workload
        delivered = {}
        for w, argv in work_argv.items():
            rec = Recorder(work / f"rec-{w}.jsonl")
            time.sleep(0.3)
            run_measured(argv, env, parse=(w == "bulk"))
            delivered[w] = rec.stop()
            (work / f"rec-{w}.jsonl").unlink(missing_ok=True)
    finally:
        srv.stop()
    out = {"rounds": rounds, "bulk_downloads_per_run": k, "bulk_size": 1 << 20, "pipe_command": PIPE_CMD,
           "samples": samples, "results": {}, "delivered_to_userspace": delivered}
    for w in work_argv:
        res = {}
        for metric in ("wall", "cpu"):
            a = [s[metric] for s in samples if s["workload"] == w and s["config"] == "agtap"]
            u = [s[metric] for s in samples if s["workload"] == w and s["config"] == "untraced"]
            res[metric] = {"untraced": summary(u), "agtap": summary(a), "agtap/untraced": summary(ratios(a, u))}
        res["tracer_cpu_s"] = summary([s["tracer_cpu"] for s in samples if s["workload"] == w and s["config"] == "agtap"])
        res["bytes_per_run"] = samples[0]["bytes"] if samples else None
        out["results"][w] = res
    return out
