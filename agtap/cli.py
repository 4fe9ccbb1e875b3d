"""`agtap`: the tracer in the foreground, the service, and its tools.

    sudo agtap [FLAGS]          trace in the foreground: one JSON event per call on stdout
    agtap serve [FLAGS]         the system service (systemd runs this; journal, D-Bus)
    sudo agtap record FILE      save raw chunks while tracing, secrets masked (a fixture, a bug report)
    agtap replay FILE           run a recording through the pipeline (no root, no BPF)
    agtap doctor                can capture work here? each line a verdict and its fix
    agtap clean                 remove stored bodies and rotated event logs
    agtap tui                   the live dashboard (same as agtap-tui)
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time

from agtap import __version__
from agtap.config import PROBE_SCOPES, Config, shown

D = Config()   # the defaults the help shows

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_BPF_REFUSED, EXIT_NOT_ROOT = 0, 1, 2, 3, 4

EPILOG = """exit status: 0 ok, 1 error (the message says what is missing and how to fix it),
2 bad usage, 3 the BPF programs did not compile or the kernel's verifier refused one
(a bug in agtap: the message says what to report), 4 needs root (run it with sudo).
Every flag may also be set in /etc/agtap/agtap.toml (key = the long name, '-' as '_');
flags win over the file, the file over the environment (AGTAP_LOG)."""


EXAMPLES = """examples:
    sudo agtap                       # trace every process; one JSON line per call on stdout
    sudo agtap -c python3 -c node    # only processes (or threads) named python3 or node
    sudo agtap -p 1234 --no-stdout   # only PID 1234; events go to the log only
    sudo agtap record bug.jsonl      # save the raw chunks (secrets masked) for a bug report
    agtap replay bug.jsonl           # the events of a recording, without root
    agtap doctor                     # can capture work on this machine?
"""


def _not_negative(kind):
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if v < 0 or v != v:
            raise argparse.ArgumentTypeError(f"must be 0 (off) or more: {text!r}")
        return v
    parse.__name__ = kind.__name__
    return parse


def _capture_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("capture")
    g.add_argument("-p", "--pid", type=int, action="append", dest="pids", metavar="PID",
                   help="trace only this process (repeatable; with -c, either selects)")
    g.add_argument("-c", "--comm", action="append", dest="comms", metavar="NAME",
                   help="trace only processes or threads of this name (repeatable)")
    g.add_argument("--probe-scope", choices=PROBE_SCOPES,
                   help=f"where the TLS data probes sit: 'process' attaches them to the processes agtap watches "
                        f"(filter, agent runtimes, TLS clients), 'host' to every process (default {D.probe_scope})")
    g.add_argument("--agent-runtime", action="append", dest="agent_runtimes", metavar="PATTERN",
                   help="programs watched from their exec on, by executable or process name; repeatable, "
                        f"replaces the list (default {shown(D.agent_runtimes)})")
    g.add_argument("--max-uprobes", type=int, metavar="N",
                   help=f"uprobes held at most; past it a library's probes go host-wide (default {D.max_uprobes})")
    g.add_argument("--demote-after-requests", type=_not_negative(int), metavar="N",
                   help="process scope: stop watching a process after N requests agtap ignored and no LLM or "
                        "MCP call; a later call of it is then missed (default "
                        f"{shown(D.demote_after_requests)}; 0 = never)")
    g.add_argument("--demote-after-mib", type=_not_negative(float), metavar="M",
                   help="process scope: the same after M MiB of ignored TLS traffic "
                        f"(default {shown(D.demote_after_mib)}; 0 = never)")
    g.add_argument("--hold-ms", type=_not_negative(int), metavar="MS",
                   help="process scope: a runtime opening a probed library or executable waits until its probes "
                        f"are live, at most MS ms, so its first call is seen (default {shown(D.hold_ms)}; 0 = never)")
    g.add_argument("-v", "--verbose", action="store_true", default=None,
                   help="log each probe attached and each file without SSL symbols")
    g.add_argument("--max-capture-bytes", type=int, metavar="N",
                   help=f"bytes copied per SSL/syscall buffer before it is cut (default {D.max_capture_bytes}, "
                        f"{D.max_capture_bytes / 2**20:g} MiB)")
    o = p.add_argument_group("output")
    o.add_argument("--log", dest="event_log", metavar="FILE",
                   help=f"event log (default {D.event_log}; env AGTAP_LOG)")
    o.add_argument("--bodies-dir", metavar="DIR", help=f"where request/response bodies are kept (default {D.bodies_dir})")
    o.add_argument("--max-body-store", type=int, metavar="MB", help=f"bodies kept, oldest removed first (default {shown(D.max_body_store)}; 0 stores none)")
    o.add_argument("--body-retention", type=float, metavar="HOURS", help=f"hours bodies are kept (default {shown(D.body_retention)})")
    o.add_argument("--max-log-size", type=int, metavar="MB", help=f"event log size before rotation (default {shown(D.max_log_size)})")
    o.add_argument("--max-log-files", type=int, metavar="N", help=f"rotated event logs kept (default {shown(D.max_log_files)})")
    o.add_argument("--no-stdout", dest="stdout", action="store_false", default=None,
                   help="foreground: do not print events on stdout")
    o.add_argument("--metrics-addr", metavar="HOST:PORT", help="serve Prometheus /metrics there")
    o.add_argument("--otel", metavar="URL", help="export OpenTelemetry (OTLP/HTTP base URL, e.g. http://host:4318)")
    o.add_argument("--bus", choices=("system", "session", "none"), help=f"D-Bus to own io.agtap.Agtap1 on (default {D.bus})")
    o.add_argument("--runtime-dir", metavar="DIR", help=f"runtime data (default {D.runtime_dir})")
    o.add_argument("--cache-dir", metavar="DIR",
                   help=f"where located BoringSSL offsets are kept (default {D.cache_dir}; env AGTAP_CACHE_DIR)")


FLAG_FIELDS = ("pids", "comms", "probe_scope", "agent_runtimes", "max_uprobes", "demote_after_requests",
               "demote_after_mib", "hold_ms", "verbose", "max_capture_bytes", "event_log", "bodies_dir", "max_body_store",
               "body_retention", "max_log_size", "max_log_files", "stdout", "metrics_addr", "otel", "bus",
               "runtime_dir", "cache_dir")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="agtap", description="See every LLM API call and MCP tool call on this host.",
                                epilog=EXAMPLES + "\n" + EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"agtap {__version__}")
    # as bcc's tools: print the BPF program that would be loaded, and exit (hidden: for debugging)
    p.add_argument("--ebpf", action="store_true", help=argparse.SUPPRESS)
    _capture_flags(p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_ in (("serve", "run as the system service (systemd starts this)"),
                        ("record", "trace and save raw chunks to FILE (API keys, cookies masked with *)"),
                        ("replay", "run a recording through the pipeline; events on stdout"),
                        ("doctor", "check that capture can work here; each line a verdict and its fix"),
                        ("clean", "remove stored bodies and rotated event logs"),
                        ("tui", "the live dashboard (agtap-tui)")):
        sp = sub.add_parser(name, help=help_, description=help_, epilog=EPILOG, argument_default=argparse.SUPPRESS,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        if name in ("serve", "record"):
            _capture_flags(sp)
        if name in ("record", "replay"):
            sp.add_argument("file", metavar="FILE")
        if name == "tui":
            sp.add_argument("tui_args", nargs=argparse.REMAINDER, help="agtap-tui's own options (--bus, --mono, ...)")
        if name == "replay":
            sp.add_argument("--chunks", action="store_true",
                            help="print the recording's items (not events), in the recording format")
        if name in ("doctor", "clean"):
            sp.add_argument("--runtime-dir")
        if name == "doctor":
            sp.add_argument("--cache-dir")
        if name == "clean":
            sp.add_argument("--log", dest="event_log", metavar="FILE")
            sp.add_argument("--bodies-dir", metavar="DIR")
    return p


def build_config(args: argparse.Namespace) -> tuple[Config, dict]:
    cfg = Config()
    cfg.apply_env()
    flags = {}
    for f in FLAG_FIELDS:
        v = getattr(args, f, None)
        if v is not None:
            flags[f] = v
            setattr(cfg, f, v)
    return cfg, flags


def _need_root(what: str) -> int:
    print(f"agtap: {what} loads BPF programs into the kernel and needs root: run 'sudo agtap"
          f"{'' if what == 'tracing' else ' ' + what}'", file=sys.stderr)
    return EXIT_NOT_ROOT


def cmd_run(cfg: Config, flags: dict, mode: str) -> int:
    if os.geteuid() != 0:
        return _need_root("tracing" if mode == "foreground" else "serve")
    from agtap.service import daemon
    return daemon.run(cfg, mode, flags=flags)


def cmd_record(cfg: Config, path: str) -> int:
    if os.geteuid() != 0:
        return _need_root("record")
    import logging
    from agtap.capture.recording import Recorder
    from agtap.capture.tracer import CaptureError, Tracer
    logging.basicConfig(level=logging.DEBUG if cfg.verbose else logging.INFO, format="agtap: %(message)s")
    try:
        rec = Recorder(path)
    except OSError as e:
        print(f"agtap: cannot write {path}: {e.strerror}", file=sys.stderr)
        return EXIT_ERROR
    lock = threading.Lock()

    def on_item(item):
        with lock:
            rec.write(item)

    tracer = Tracer(cfg, on_item)
    try:
        tracer.start()
    except CaptureError as e:
        print(f"agtap: {e}", file=sys.stderr)
        return e.exit_status
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"agtap: recording to {path} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    while not stop.is_set():
        tracer.poll(100)
    c = tracer.counters()
    tracer.stop()
    rec.close()
    print(f"agtap: {rec.items} items recorded; lost records {c['lost_records']}, cut buffers {c['cut_buffers']}",
          file=sys.stderr)
    return EXIT_OK


def cmd_replay(path: str, chunks: bool) -> int:
    import json
    from agtap.capture.recording import RecordingError, encode, read
    try:
        items = read(path)
        if chunks:
            for item in items:
                sys.stdout.write(encode(item) + "\n")
            return EXIT_OK
        from agtap.pipeline import Pipeline

        def emit(call):
            sys.stdout.write(json.dumps(call.to_dict(), ensure_ascii=False) + "\n")

        pipe = Pipeline(emit)
        for item in items:
            pipe.feed(item)
        pipe.flush()
    except FileNotFoundError:
        print(f"agtap: {path}: no such file", file=sys.stderr)
        return EXIT_ERROR
    except RecordingError as e:
        print(f"agtap: {e}", file=sys.stderr)
        return EXIT_ERROR
    sys.stdout.flush()
    return EXIT_OK


def cmd_clean(cfg: Config) -> int:
    from agtap.service.controller import Controller
    if os.geteuid() != 0 and not os.access(os.path.dirname(cfg.bodies_dir) or ".", os.W_OK):
        print("agtap: clean removes files owned by root: run 'sudo agtap clean'", file=sys.stderr)
        return EXIT_NOT_ROOT
    removed = Controller(cfg, lambda *a: None).clean()
    print(f"agtap: removed {removed.get('body_files', 0)} body files and {removed.get('log_files', 0)} "
          f"rotated logs ({removed.get('bytes', 0)} bytes)")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg, flags = build_config(args)
    cmd = args.command
    if getattr(args, "ebpf", False):
        from agtap.capture.loader import program_text
        sys.stdout.write(program_text(cfg.max_capture_bytes))
        return EXIT_OK
    try:
        if cmd is None:
            return cmd_run(cfg, flags, "foreground")
        if cmd == "serve":
            return cmd_run(cfg, flags, "service")
        if cmd == "record":
            return cmd_record(cfg, args.file)
        if cmd == "replay":
            return cmd_replay(args.file, getattr(args, "chunks", False))
        if cmd == "doctor":
            from agtap.capture import doctor
            return doctor.main(cfg.runtime_dir, cfg.cache_dir)
        if cmd == "clean":
            return cmd_clean(cfg)
        if cmd == "tui":
            from agtap.tui.app import main as tui_main
            return tui_main(getattr(args, "tui_args", []))
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
