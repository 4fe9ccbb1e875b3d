"""Bench 2: traffic agtap must not care about.

(a) bulk HTTPS: K sequential GET /bulk/1MiB over keep-alive (Python http.client). agtap
    sees the request line "GET /bulk/..." on SSL_write; the pipeline finds no provider,
    marks the connection ignored, and the kernel stops copying it until the next request
    line — but the uprobes still fire on every SSL_read.
(b) a pipe: `dd if=/dev/zero bs=64k count=16384 | cat > /dev/null` (1 GiB); the syscall
    tracepoints fire on every read/write, the buffer's first bytes are not JSON-RPC.
(c) h2bulk: K/4 sequential GET /bulk/1MiB over ONE HTTP/2 TLS connection (httpx2, http2=True,
    against tests.support.serve --http2). An HTTP/2 connection is captured whole (it may carry an
    LLM call next); the pipeline marks each /bulk stream uninteresting and the kernel stops
    copying its DATA (bpf/h2.h): only the frames' headers reach userspace. What reached it is
    read from the daemon's own counters (capture bytes, HTTP/2 bytes dropped) in a pass whose
    tracer selects the client's pid alone (`agtap record` has no pipeline to mark streams).
Configurations untraced / agtap interleaved (A B A B, order alternating per round). Then
one pass under `agtap record` to count what reached userspace (items, payload bytes).
"""

from __future__ import annotations

import time
from pathlib import Path

import json
import subprocess

from bench.harness import PY, REPO, Agtap, Recorder, Server, client_env, free_port, ratios, run_measured, summary

PIPE_CMD = "dd if=/dev/zero bs=64k count=16384 status=none | cat > /dev/null"


class H2Server:
    """tests.support.serve --http2 in a process of its own (bodies of /bulk/ not kept)."""

    def __init__(self, work: Path):
        self.p = subprocess.Popen([PY, "-m", "tests.support.serve", "--http2", "--certs", str(work / "h2certs")],
                                  stdout=subprocess.PIPE, cwd=REPO)
        info = json.loads(self.p.stdout.readline())
        self.url, self.ca = info["base_url"], info["ca"]

    def stop(self) -> None:
        self.p.terminate()
        self.p.wait(30)


def h2_delivered(work: Path, argv: list[str], env: dict) -> dict:
    """One h2bulk run under a daemon that selects its pid: what reached userspace, by its counters."""
    p = subprocess.Popen([*argv, "--wait-go"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=REPO)
    p.stdout.readline()   # {"ready"}: connected, warmed up
    tracer = Agtap(work, "-p", str(p.pid), metrics_port=free_port())
    try:
        m0 = tracer.metrics()
        p.stdin.write(b"go\n")
        p.stdin.flush()
        res = json.loads(p.stdout.readline())
        p.wait(60)
        time.sleep(1)
        m1 = tracer.metrics()
    finally:
        tracer.stop()
    delta = {k: m1.get(k, 0.0) - m0.get(k, 0.0) for k in m1}
    return {"downloaded_bytes": res["bytes"], "http_version": res.get("http_version"),
            "capture_bytes": int(delta.get("agtap_capture_bytes_total", 0)),
            "records": int(delta.get("agtap_capture_records_total", 0)),
            "h2_dropped_bytes": int(delta.get("agtap_http2_dropped_bytes_total", 0)),
            "h2_walks_lost": int(delta.get("agtap_http2_walks_lost_total", 0))}


def run(work: Path, quick: bool) -> dict:
    rounds = 3 if quick else 6
    k = 100 if quick else 400
    k_h2 = k // 4   # python3-h2 decodes every frame in Python: 4x slower per MiB than http.client
    srv = Server(work)
    h2srv = H2Server(work)
    env = client_env(srv.ca)
    h2env = client_env(h2srv.ca)
    work_argv = {"bulk": [PY, str(REPO / "bench/clients/bulk.py"), "127.0.0.1", str(srv.port), srv.ca, str(k)],
                 "pipe": ["/bin/bash", "-c", PIPE_CMD],
                 "h2bulk": [PY, str(REPO / "bench/clients/h2bulk.py"), h2srv.url, str(k_h2)]}
    envs = {"bulk": env, "pipe": env, "h2bulk": h2env}
    parsed = {"bulk", "h2bulk"}
    samples = []
    try:
        for w in work_argv:   # warm-up
            run_measured(work_argv[w], envs[w], parse=(w in parsed))
        for r in range(rounds):
            order = ("untraced", "agtap") if r % 2 == 0 else ("agtap", "untraced")
            for cfg in order:
                tracer = Agtap(work) if cfg == "agtap" else None
                time.sleep(0.3)
                for w, argv in work_argv.items():
                    c0 = tracer.cpu() if tracer else 0.0
                    res, proc = run_measured(argv, envs[w], parse=(w in parsed))
                    s = {"round": r, "config": cfg, "workload": w, "proc_wall": proc["wall"],
                         "proc_cpu": proc["cpu"], "tracer_cpu": (tracer.cpu() - c0) if tracer else 0.0}
                    if w in parsed:
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
            if w == "h2bulk":
                continue
            rec = Recorder(work / f"rec-{w}.jsonl")
            time.sleep(0.3)
            run_measured(argv, env, parse=(w == "bulk"))
            delivered[w] = rec.stop()
            (work / f"rec-{w}.jsonl").unlink(missing_ok=True)
        h2 = h2_delivered(work, work_argv["h2bulk"], h2env)
    finally:
        srv.stop()
        h2srv.stop()
    out = {"rounds": rounds, "bulk_downloads_per_run": k, "bulk_size": 1 << 20, "pipe_command": PIPE_CMD,
           "h2bulk_downloads_per_run": k_h2, "h2_delivered": h2,
           "samples": samples, "results": {}, "delivered_to_userspace": delivered}
    for w in work_argv:
        res = {}
        for metric in ("wall", "cpu"):
            a = [s[metric] for s in samples if s["workload"] == w and s["config"] == "agtap"]
            u = [s[metric] for s in samples if s["workload"] == w and s["config"] == "untraced"]
            res[metric] = {"untraced": summary(u), "agtap": summary(a), "agtap/untraced": summary(ratios(a, u))}
        res["tracer_cpu_s"] = summary([s["tracer_cpu"] for s in samples if s["workload"] == w and s["config"] == "agtap"])
        res["bytes_per_run"] = next((s["bytes"] for s in samples if s["workload"] == w), None)
        out["results"][w] = res
    return out
