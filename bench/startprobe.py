"""Where agtap's start-up time and idle memory go (bench 5), in a process of its own:

    python -m bench.startprobe RUNTIME_DIR

Times each phase of Tracer.start() the way the daemon runs it (imports, kernel headers,
BCC compile of the BPF C, attaching), then breaks the RSS down by mapping, and says how much RSS Tracer.start() gave back after
the compile (malloc_trim + MADV_DONTNEED of clang/LLVM's clean pages). Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import time


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def by_mapping() -> dict[str, int]:
    from agtap.capture.loader import smaps
    tot: dict[str, int] = {}
    for m in smaps():
        tot[m.path or "[anon]"] = tot.get(m.path or "[anon]", 0) + m.kb.get("Rss", 0)
    return dict(sorted(tot.items(), key=lambda kv: -kv[1])[:8])


def main() -> int:
    rt = sys.argv[1]
    t0 = time.monotonic()
    from agtap.config import Config
    from agtap.capture import headers, loader
    from agtap.capture.tracer import Tracer
    import agtap.pipeline  # noqa: F401  (the daemon imports these too)
    import agtap.service.daemon  # noqa: F401
    t1 = time.monotonic()
    tree = headers.find_header_tree(rt)
    t2 = time.monotonic()
    b = loader.compile_program(Config().max_capture_bytes, tree.path)
    t3 = time.monotonic()
    b.cleanup()
    del b
    tr = Tracer(Config(runtime_dir=rt), lambda item: None)
    t4 = time.monotonic()
    tr.start()
    t5 = time.monotonic()
    out = {"imports_s": t1 - t0, "headers_s": t2 - t1, "bcc_compile_s": t3 - t2, "tracer_start_s": t5 - t4,
           "targets": len(tr.targets), "rss_after_start_mb": rss_kb() / 1024,
           "rss_by_mapping_mb": {k: v / 1024 for k, v in by_mapping().items()}}
    # Tracer.start() gave back what the compile left resident (loader.release_compiler_memory)
    out["rss_before_release_mb"] = out["rss_after_start_mb"] + tr.released_bytes / 2**20
    t6 = time.monotonic()
    tr.stop()
    out["tracer_stop_s"] = time.monotonic() - t6
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
