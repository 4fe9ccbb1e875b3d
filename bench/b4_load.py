"""Bench 4: zero loss under load, ramped until loss appears or 500 calls/s.

Each step runs the same schedule twice: untraced first (does the server + load generator
keep up on their own?), then with agtap running (a fresh daemon per step, with
--metrics-addr for its capture counters). Load: bench.loadgen, 2 processes x 25 threads
(up to 50 connections at once), open loop, Anthropic/OpenAI/Gemini x streamed/JSON, one
call in H2_EVERY over HTTP/2 (each thread's own h2 connection, a stream per call).
Compared per step: calls made vs events logged for the load generators' pids, output
tokens summed (expected: 194 per call), lost/cut records, parse errors, daemon CPU
(100% = one core) and RSS (max, sampled every 0.5 s). After the load the bench waits for
the log to catch up (until every call is logged, or no progress for 5 s, at most
drain_max s): zero loss = every call logged complete with the right tokens and no
lost/cut records; kept up = that, with the log caught up within 2 s of the load's end.
The daemon runs with `-c agtap-bench-lg` (the load generator's thread name): on this shared
machine other helpers' test suites make LLM calls too, and an unfiltered daemon would add
their calls to the load (the probes still fire for every process; only copying is filtered).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

from bench.harness import PY, REPO, Agtap, Server, client_env, free_port, host_cpu, host_cpu_pct
from bench.loadgen import COMM
from bench.server import reply_for

STEPS = (25, 50, 100, 200, 300, 400, 500)
PROCS, THREADS = 2, 25
H2_EVERY = 4   # one round of the 6 kinds in 4 goes over HTTP/2: a quarter of the calls
TOKENS_PER_CALL = reply_for(200).output_tokens


def load(srv: Server, rate: float, duration: float, env: dict, extra: list[str] = (), calls_out: Path | None = None
         ) -> list[dict]:
    start_at = time.time() + 1.0
    ps = []
    for o in range(PROCS):
        argv = [PY, "-m", "bench.loadgen", "--port", str(srv.port), "--ca", srv.ca, "--rate", str(rate),
                "--duration", str(duration), "--threads", str(THREADS), "--offset", str(o), "--stride", str(PROCS),
                "--start-at", str(start_at), "--h2-every", str(H2_EVERY), *extra]
        if calls_out is not None:
            argv += ["--calls-out", f"{calls_out}.{o}"]
        ps.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, env=env))
    out = []
    for p in ps:
        o, e = p.communicate(timeout=duration + 120)
        if p.returncode != 0:
            raise RuntimeError(f"loadgen failed: {e.decode()[-2000:]}")
        out.append(json.loads(o.decode().strip().splitlines()[-1]))
    return out


def _agg(gens: list[dict]) -> dict:
    return {"scheduled": sum(g["scheduled"] for g in gens), "made": sum(g["made"] for g in gens),
            "ok": sum(g["ok"] for g in gens), "errors": sum(g["errors"] for g in gens),
            "late_p99_ms": max((g["late_p99_ms"] or 0) for g in gens),
            "elapsed": max(g["elapsed"] for g in gens), "pids": [g["pid"] for g in gens],
            "ok_h2": sum(n for g in gens for k, n in g["by_kind"].items() if k.endswith("-h2"))}


def run(work: Path, quick: bool) -> dict:
    d_untraced, d_traced = (5, 10) if quick else (20, 60)
    drain_max = 60 if quick else 90
    steps = (25, 100, 200) if quick else STEPS
    srv = Server(work, procs=2)
    env = client_env(srv.ca)
    out = {"steps": [], "procs": PROCS, "threads_per_proc": THREADS, "h2_every": H2_EVERY, "tokens_per_call": TOKENS_PER_CALL,
           "duration_untraced_s": d_untraced, "duration_traced_s": d_traced, "drain_max_s": drain_max}
    knee = None
    try:
        load(srv, 20, 2, env)   # warm-up
        for rate in steps:
            step = {"rate": rate}
            c0, t0, h0 = srv.cpu(), time.monotonic(), host_cpu()
            u = _agg(load(srv, rate, d_untraced, env))
            u["host_cpu_pct"] = host_cpu_pct(h0, host_cpu())
            u["achieved_calls_per_s"] = u["ok"] / max(u["elapsed"], 1e-9)
            u["server_cpu_pct"] = 100 * (srv.cpu() - c0) / (time.monotonic() - t0)
            step["untraced"] = u
            port = free_port()
            d = Agtap(work, "-c", COMM, metrics_port=port)
            step["ready_s"] = d.ready_s
            idle_rss = d.rss_mb()
            m0 = d.metrics()
            rss = [idle_rss]
            sampling = [True]

            def sample():
                while sampling[0]:
                    rss.append(d.rss_mb())
                    time.sleep(0.5)
            th = threading.Thread(target=sample, daemon=True)
            th.start()
            cpu0, sc0, w0, h0 = d.cpu(), srv.cpu(), time.monotonic(), host_cpu()
            gens = load(srv, rate, d_traced, env)
            host = host_cpu_pct(h0, host_cpu())
            w_load = time.monotonic() - w0
            cpu_load = d.cpu() - cpu0
            t = _agg(gens)
            pids = set(t["pids"])
            # drain: wait until every call made is logged, or the count stops growing for 5 s,
            # at most drain_max s: a call not logged by then counts as lost
            last, since, deadline = -1, time.monotonic(), time.monotonic() + drain_max
            while time.monotonic() < deadline:
                evs = [e for e in d.events() if e.get("pid") in pids]
                if len(evs) >= t["ok"]:
                    break
                if len(evs) != last:
                    last, since = len(evs), time.monotonic()
                elif time.monotonic() - since > 5:
                    break
                time.sleep(0.5)
            drain_s = time.monotonic() - w0 - w_load
            sampling[0] = False
            th.join(2)
            m1 = d.metrics()
            cpu_total = d.cpu() - cpu0
            evs = [e for e in d.events() if e.get("pid") in pids]
            other = sum(1 for e in d.events() if e.get("pid") not in pids)
            d.stop()
            t.update({
                "achieved_calls_per_s": t["ok"] / max(t["elapsed"], 1e-9),
                "events_logged": len(evs),
                "events_complete": sum(1 for e in evs if not e.get("incomplete")),
                "events_incomplete": sum(1 for e in evs if e.get("incomplete")),
                "events_complete_h2": sum(1 for e in evs if not e.get("incomplete") and e.get("http_version") == "2"),
                "output_tokens_logged": sum(e.get("output_tokens") or 0 for e in evs),
                "output_tokens_expected": t["ok"] * TOKENS_PER_CALL,
                "events_other_pids": other,
                "lost_records": m1.get("agtap_lost_records_total", 0) - m0.get("agtap_lost_records_total", 0),
                "cut_records": m1.get("agtap_cut_records_total", 0) - m0.get("agtap_cut_records_total", 0),
                "parse_errors": m1.get("agtap_parse_errors_total", 0) - m0.get("agtap_parse_errors_total", 0),
                "daemon_cpu_pct_during_load": 100 * cpu_load / w_load,
                "host_cpu_pct_during_load": host,   # the whole machine (2 cores = 100%), others' work included
                "daemon_cpu_s_total": cpu_total,
                "drain_s_after_load": drain_s,
                "server_cpu_pct": 100 * (srv.cpu() - sc0) / (w_load + drain_s),
                "daemon_rss_idle_mb": idle_rss,
                "daemon_rss_max_mb": max(rss),
            })
            t["lost_calls"] = t["ok"] - t["events_complete"]
            t["lost_calls_h2"] = t["ok_h2"] - t["events_complete_h2"]
            # kept up: the log caught up within 2 s of the load's end (else a backlog built up)
            t["kept_up"] = t["lost_calls"] == 0 and drain_s <= 2.0
            t["zero_loss"] = (t["lost_calls"] == 0 and t["lost_calls_h2"] == 0 and t["lost_records"] == 0 and t["cut_records"] == 0
                              and t["output_tokens_logged"] == t["output_tokens_expected"])
            step["agtap"] = t
            out["steps"].append(step)
            print(f"bench: load {rate}/s: untraced {u['achieved_calls_per_s']:.0f}/s, agtap "
                  f"{t['achieved_calls_per_s']:.0f}/s, {t['events_complete']}/{t['ok']} logged "
                  f"({t['events_complete_h2']}/{t['ok_h2']} over HTTP/2), "
                  f"lost rec {t['lost_records']:.0f}, daemon cpu {t['daemon_cpu_pct_during_load']:.0f}%, "
                  f"rss {t['daemon_rss_max_mb']:.0f} MB", flush=True)
            if not t["zero_loss"]:
                knee = rate
                break
    finally:
        srv.stop()
    ok_steps = [s["rate"] for s in out["steps"] if s["agtap"]["zero_loss"]]
    out["max_zero_loss_rate"] = max(ok_steps) if ok_steps else 0
    out["first_loss_rate"] = knee
    return out
