"""The daemon: one asyncio loop around the Controller.

    foreground (`sudo agtap`)   JSONL on stdout and in the event log, logs on stderr,
                                D-Bus if the bus is reachable (a warning if not)
    service    (`agtap serve`)  under systemd (Type=notify): logs to the journal,
                                D-Bus required

The tracer's poll() runs in a thread of its own and hands items to the loop
(call_soon_threadsafe); the loop feeds the pipeline, writes the sinks and
emits CallCaptured. Blocking work (attaching probes, detaching them, clean)
runs in worker threads, so the loop always answers the bus and the watchdog.

sd_notify: READY=1 once the probes are attached and the bus name is owned;
STATUS= kept current; WATCHDOG=1 every WATCHDOG_USEC/2; SIGHUP →
RELOADING=1 + MONOTONIC_USEC, re-read the config file (filters, sizes),
READY=1; SIGINT/SIGTERM → STOPPING=1, detach, finish open calls as
incomplete ("shutdown"), close the sinks, exit 0.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from agtap import __version__
from agtap.config import DEFAULT_CONFIG_FILE, Config
from agtap.service.configfile import ConfigFileError, build_config, load_config_file
from agtap.service.controller import Controller, Failed

log = logging.getLogger("agtap.service")

SHUTDOWN_BUDGET_S = 1.5        # detaching probes must not hold the exit past systemd's patience
STATUS_EVERY_S = 1.0
PRUNE_EVERY_S = 600.0
# Settings a reload cannot apply to a running daemon (the rest: filters, sizes, retention).
RESTART_KEYS = ("bus", "stdout", "event_log", "bodies_dir", "runtime_dir", "metrics_addr", "otel",
                "max_capture_bytes", "verbose", "record")


class Notifier:
    """sd_notify, a no-op without NOTIFY_SOCKET (foreground runs)."""

    def __init__(self):
        self._n = None
        if os.environ.get("NOTIFY_SOCKET"):
            import sdnotify
            self._n = sdnotify.SystemdNotifier()
            # A listener that stops reading must not block the loop: a full datagram
            # queue drops the message (sdnotify swallows the error) instead of waiting.
            sock = getattr(self._n, "socket", None)
            if sock is not None:
                sock.setblocking(False)
        self._status = None

    def notify(self, *lines: str) -> None:
        if self._n is not None:
            # sdnotify encodes latin-1; systemd reads UTF-8: hand it the UTF-8 bytes as latin-1 text.
            self._n.notify("\n".join(lines).encode("utf-8").decode("latin-1"))

    def status(self, text: str) -> None:
        if text != self._status:
            self._status = text
            self.notify(f"STATUS={text}")


def watchdog_interval() -> float | None:
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec), 1) / 2 / 1e6
    except ValueError:
        return None


def setup_logging(mode: str, verbose: bool) -> None:
    root = logging.getLogger("agtap")
    for h in list(root.handlers):
        root.removeHandler(h)
    if mode == "service":
        try:
            from systemd.journal import JournalHandler
            handler: logging.Handler = JournalHandler(SYSLOG_IDENTIFIER="agtap")
        except ImportError:
            handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.setLevel(logging.DEBUG if verbose else logging.INFO)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("agtap: %(message)s"))
        root.setLevel(logging.INFO if verbose else logging.WARNING)
    root.addHandler(handler)
    root.propagate = False


def default_tracer_factory(config: Config, on_item, log_: logging.Logger):
    from agtap.capture.tracer import Tracer     # BCC: only when really capturing
    return Tracer(config, on_item, log_)


def build_sinks(config: Config, mode: str) -> list[Any]:
    """Bodies first (it sets call.body_path), then the event log, then the journal."""
    from agtap.sinks import fsutil
    from agtap.sinks.bodies import BodiesSink
    from agtap.sinks.journal import JournalSink
    from agtap.sinks.jsonl import JsonlSink
    # A log or bodies path someone could redirect (a planted symlink, a directory
    # owned by another user) stops the start: the sinks alone would only count
    # their write failures and the daemon would run recording nothing.
    if config.event_log:
        fsutil.ensure_dir(os.path.dirname(os.path.abspath(config.event_log)))
        os.close(fsutil.open_append(config.event_log))
    if config.bodies_dir:
        fsutil.ensure_dir(config.bodies_dir)
    sinks: list[Any] = [
        BodiesSink(config.bodies_dir, config.max_body_store, config.body_retention),
        JsonlSink(config.event_log, config.max_log_size, config.max_log_files,
                  stdout=config.stdout and mode == "foreground"),
        JournalSink(enabled=mode == "service"),
    ]
    try:
        if config.metrics_addr:
            from agtap.sinks.prometheus import PrometheusSink
            sinks.append(PrometheusSink(config.metrics_addr))
        if config.otel:
            from agtap.sinks.otel import OtelSink
            sinks.append(OtelSink(config.otel))
    except BaseException:
        for s in sinks:
            s.close()
        raise
    return sinks


def _call_soon(loop: asyncio.AbstractEventLoop, fn) -> None:
    """Hand fn to the loop from another thread; dropped once the loop is closed (shutting down)."""
    try:
        loop.call_soon_threadsafe(fn)
    except RuntimeError:
        pass


def in_daemon_thread(fn) -> asyncio.Future:
    """fn() in a daemon thread, as a future: unlike asyncio.to_thread, a stuck fn cannot hold the exit
    (asyncio.run joins its executor's threads; the kernel removes the probes when the process exits)."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def done(result=None, exc=None):
        if not fut.done():
            fut.set_exception(exc) if exc is not None else fut.set_result(result)

    def work():
        try:
            r = fn()
        except BaseException as e:              # handed to the awaiting coroutine
            loop.call_soon_threadsafe(done, None, e)
        else:
            loop.call_soon_threadsafe(done, r)
    threading.Thread(target=work, name="agtap-stop", daemon=True).start()
    return fut


def apply_sizes(sinks: list[Any], config: Config) -> None:
    """Live size and retention limits after a reload: a sink's own reconfigure(config) if it has one."""
    for s in sinks:
        if hasattr(s, "reconfigure"):
            s.reconfigure(config)
        elif getattr(s, "name", "") == "jsonl":
            s.max_size = max(int(config.max_log_size * 1024 * 1024), 1)
            s.max_files = max(int(config.max_log_files), 0)
        elif getattr(s, "name", "") == "bodies":
            s.max_store = int(config.max_body_store * 1024 * 1024)
            s.retention_s = config.body_retention * 3600.0


class Daemon:
    def __init__(self, config: Config, mode: str, *, tracer_factory=None, sinks=None,
                 pipeline_factory=None, config_file: str | None = DEFAULT_CONFIG_FILE,
                 flags: dict[str, Any] | None = None):
        if mode not in ("foreground", "service"):
            raise ValueError(f"mode {mode!r}")
        self.config, self.mode = config, mode
        self.tracer_factory = tracer_factory or default_tracer_factory
        self.sinks = sinks
        self.pipeline_factory = pipeline_factory
        self.config_file, self.flags = config_file, flags
        self._base = dataclasses.replace(config)     # defaults + flags, before the file
        self.notifier = Notifier()
        self.ctl: Controller | None = None
        self.exit_code = 0                 # 1 when the bus was lost under a service
        self.detach_pending = False        # probes still detaching when main() returned
        self.dbus = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def status(self) -> None:
        if self.ctl is not None:
            self.notifier.status(self.ctl.status_line())

    async def main(self) -> int:
        """Start (config file, outputs, probes, D-Bus), say READY=1, run until told to stop."""
        loop = asyncio.get_running_loop()
        self._handle_signals(loop)
        if not self._load_config_file():
            return 1
        wd = watchdog_interval()
        if wd:
            self._spawn(self._watchdog(wd))
        self.notifier.status("starting: attaching probes")
        if not self._make_controller(loop):
            return 1
        status = await self._start_capture()
        if status is not None:
            return status
        self.notifier.notify("READY=1", f"STATUS={self.ctl.status_line()}")
        self._spawn(self._housekeeping())
        await self._stop.wait()
        self.notifier.notify("STOPPING=1", "STATUS=stopping: detaching probes")
        await self._shutdown()
        return self.exit_code

    def _handle_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self.reload()))

    def _load_config_file(self) -> bool:
        """Given command-line flags: the config file under them. False (logged, in STATUS) if it is bad."""
        if self.flags is None:
            return True
        try:
            verbose = self.config.verbose
            self.config = build_config(self.flags, self.config_file, base=self.config)
        except ConfigFileError as e:
            log.error("%s", e)
            self.notifier.status(f"failed: {e}")
            return False
        if self.config.verbose != verbose:       # `verbose = true` in the file
            setup_logging(self.mode, self.config.verbose)
        return True

    def _make_controller(self, loop: asyncio.AbstractEventLoop) -> bool:
        """The outputs and the controller over them. False (logged, in STATUS) if an output cannot be set up."""
        try:
            sinks = self.sinks if self.sinks is not None else build_sinks(self.config, self.mode)
        except (RuntimeError, OSError, ValueError) as e:       # a missing SDK, a taken metrics port
            log.error("cannot set up the outputs: %s", e)
            self.notifier.status(f"failed: {e}")
            return False
        kw = {"pipeline_factory": self.pipeline_factory} if self.pipeline_factory else {}
        self.ctl = Controller(self.config, self.tracer_factory, sinks=sinks,
                              schedule=lambda fn: _call_soon(loop, fn), log=log, **kw)
        for s in sinks:
            if hasattr(s, "set_stats_source"):           # Prometheus: every GetStats counter at every scrape
                s.set_stats_source(stats=self.ctl.get_stats)
        return True

    async def _start_capture(self) -> int | None:
        """Attach the probes, then serve D-Bus. None: running; else the exit status (all shut down)."""
        try:
            # BCC compiles for seconds: in a thread, so the loop keeps pinging the watchdog.
            # A SIGTERM meanwhile is acted on once attaching is done (it cannot be interrupted).
            await asyncio.to_thread(self.ctl.start)
        except Failed as e:
            log.error("cannot start capturing: %s", e)
            self.notifier.status(f"failed: {e}")
            self.ctl.shutdown()
            # a refused BPF program refuses again at every start: a status the unit does not restart on
            return getattr(e.__cause__, "exit_status", 1)
        if self._stop.is_set():
            self.notifier.notify("STOPPING=1")
            await self._shutdown()
            return 0
        if self.config.bus != "none" and not await self._start_dbus():
            self.notifier.notify("STOPPING=1")
            await self._shutdown()
            return 1
        return None

    async def _start_dbus(self) -> bool:
        from agtap.service.dbus_object import BusUnavailable, DbusService
        svc = DbusService(self.ctl, self.config.bus, __version__, on_change=self.status)
        try:
            await svc.start()
        except BusUnavailable as e:
            if self.mode == "service":
                log.error("%s", e)
                self.notifier.status(f"failed: {e}")
                return False
            log.warning("%s; continuing without D-Bus (agtapctl and agtap-tui will not see this tracer)", e)
            return True
        self.dbus = svc
        self._spawn(self._watch_bus(svc))
        return True

    async def _watch_bus(self, svc) -> None:
        """The bus connection ended under us: say so; the service stops with an error (systemd restarts it)."""
        try:
            await svc.wait_lost()
        except Exception as e:
            log.error("lost the D-Bus connection: %s", e)
        else:
            log.error("lost the D-Bus connection")
        if self._stop.is_set():
            return
        if self.mode == "service":
            self.exit_code = 1
            self._stop.set()
        else:
            self.dbus = None
            log.warning("continuing without D-Bus (agtapctl and agtap-tui will not see this tracer)")

    async def _shutdown(self) -> None:
        for t in self._tasks:
            t.cancel()
        try:
            await asyncio.wait_for(in_daemon_thread(self.ctl.stop), SHUTDOWN_BUDGET_S)
        except asyncio.TimeoutError:
            log.warning("detaching probes took over %.1f s; exiting anyway", SHUTDOWN_BUDGET_S)
            self.detach_pending = True
        except Failed as e:
            log.error("%s", e)
        self.ctl.finish()             # open calls -> incomplete "shutdown", sinks closed
        if self.dbus is not None:
            await self.dbus.stop()

    def _spawn(self, coro) -> None:
        self._tasks.append(asyncio.ensure_future(coro))

    async def _watchdog(self, every: float) -> None:
        while True:
            self.notifier.notify("WATCHDOG=1")
            await asyncio.sleep(every)

    async def _housekeeping(self) -> None:
        last_prune = time.monotonic()
        while True:
            await asyncio.sleep(STATUS_EVERY_S)
            self.ctl.expire()
            self.status()
            if time.monotonic() - last_prune >= PRUNE_EVERY_S:
                last_prune = time.monotonic()
                for s in self.ctl.sinks:
                    if hasattr(s, "prune"):
                        try:
                            s.prune()
                        except Exception:
                            log.exception("pruning %s", getattr(s, "name", s))

    async def reload(self) -> None:
        if self.ctl is None:
            return
        mono_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notifier.notify("RELOADING=1", f"MONOTONIC_USEC={mono_usec}", "STATUS=reloading configuration")
        try:
            if self.flags is not None:
                new = build_config(self.flags, self.config_file, base=self._base)
            else:             # flags unknown: the file's keys on top of what runs now
                new = dataclasses.replace(self.config)
                for k, v in (load_config_file(self.config_file) if self.config_file else {}).items():
                    setattr(new, k, v)
            for key in RESTART_KEYS:             # not changeable live: keep, and say so
                if getattr(new, key) != getattr(self.config, key):
                    log.warning("reload: %s changed; it takes effect at the next restart (systemctl restart agtap)", key)
                    setattr(new, key, getattr(self.config, key))
            if (new.pids, new.comms) != (self.ctl.pids, self.ctl.comms):
                self.ctl.set_filter(new.pids, new.comms)
            apply_sizes(self.ctl.sinks, new)
            self.config = self.ctl.config = new
            log.info("configuration reloaded from %s", self.config_file)
        except (ConfigFileError, Exception) as e:
            log.error("reload failed, keeping the running configuration: %s", e)
        self.notifier.notify("READY=1", f"STATUS={self.ctl.status_line()}")
        if self.dbus is not None:
            self.dbus.properties_changed()


def run(config: Config, mode: str, *, flags: dict[str, Any] | None = None,
        config_file: str | None = DEFAULT_CONFIG_FILE, **kw: Any) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit code (0 clean, 1 could not start).

    `config` holds the defaults plus the flags; `flags` names the Config fields the
    user gave on the command line ({"comms": ["python3"], ...}). With `flags`, the
    daemon reads `config_file` itself (precedence: flags > file > AGTAP_LOG >
    defaults) at start and again on SIGHUP. Without it, `config` is taken as final
    and SIGHUP lays the file's keys over it. kw: tracer_factory, sinks,
    pipeline_factory (tests inject a fake tracer through them).
    """
    setup_logging(mode, config.verbose)
    daemon = Daemon(config, mode, flags=flags, config_file=config_file, **kw)
    try:
        rc = asyncio.run(daemon.main())
    except KeyboardInterrupt:
        rc = 0
    if daemon.detach_pending:
        # BCC is still detaching in a daemon thread: a normal interpreter exit would
        # tear its objects down under it (seen: a segfault, or a hang). The sinks are
        # closed; leave now and let the kernel release the remaining probes.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    return rc
