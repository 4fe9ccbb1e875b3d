"""Bench 5: start-up and memory.

Time from exec to READY=1 on a NOTIFY_SOCKET this bench listens on (agtap foreground,
full pipeline, as tests.support.agtapd.Agtapd starts it), RSS idle 3 s after READY, and the time from
SIGTERM to exit. sslsniff-bpfcc's time to attach is measured alongside (interleaved) for
scale. RSS under load is bench 4's (max per step). bench/startprobe.py (interleaved) splits
the start into phases and the idle RSS by mapping (see there).
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.harness import PY, Agtap, Sslsniff, run_measured, summary


def run(work: Path, quick: bool) -> dict:
    rounds = 2 if quick else 5
    ready, idle, hwm, stop_s, sniff, probes = [], [], [], [], [], []
    for r in range(rounds):
        for cfg in (("agtap", "sslsniff", "phases") if r % 2 == 0 else ("phases", "sslsniff", "agtap")):
            if cfg == "agtap":
                d = Agtap(work)
                ready.append(d.ready_s)
                time.sleep(3)
                idle.append(d.rss_mb())
                from bench.harness import proc_hwm_mb
                hwm.append(proc_hwm_mb(d.p.pid))
                t0 = time.monotonic()
                d.stop()
                stop_s.append(time.monotonic() - t0)
            elif cfg == "phases":
                res, _ = run_measured([PY, "-m", "bench.startprobe", str(work / "rt")])
                probes.append(res)
            else:
                s = Sslsniff(work)
                sniff.append(s.ready_s)
                s.stop()
            time.sleep(0.5)
    return {"rounds": rounds, "agtap_ready_s": summary(ready), "agtap_idle_rss_mb": summary(idle),
            "agtap_peak_rss_mb_at_idle": summary(hwm), "agtap_sigterm_to_exit_s": summary(stop_s),
            "sslsniff_attach_s": summary(sniff),
            "phases": {k: summary([p[k] for p in probes]) for k in (
                "imports_s", "headers_s", "bcc_compile_s", "tracer_start_s", "rss_before_release_mb",
                "rss_after_start_mb", "tracer_stop_s")},
            "rss_by_mapping_mb": probes[-1]["rss_by_mapping_mb"] if probes else {},
            "samples": {"ready_s": ready, "idle_rss_mb": idle, "hwm_mb": hwm, "stop_s": stop_s, "sslsniff_s": sniff}}
