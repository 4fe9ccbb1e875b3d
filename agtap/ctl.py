"""agtapctl: talk to the agtap service on the bus.

    agtapctl status | stats | calls [-n N] [--follow] | body ID     (root or group agtap)
    agtapctl start | stop | filter --pid N --comm NAME | filter --clear | clean
                                                    (root, or polkit io.agtap.manage)

--json on every read command; --bus system|session. Exit codes: 0 ok, 1 error,
3 agtap not running (or no bus), 4 access denied. Every string that came over
the bus goes through agtap.textsafe (safe_field: one line; printable) before it reaches the terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
from typing import Any

from agtap import busnames as B
from agtap.busclient import (READ_TIMEOUT_S, AccessDenied, BusClient, BusUnavailable, ClientError, NoAnswer,
                             NotRunning, unwrap)
from agtap.textsafe import printable, safe_field

EXIT_OK, EXIT_ERROR, EXIT_NOT_RUNNING, EXIT_DENIED = 0, 1, 3, 4
READ_FIX = B.JOIN_GROUP_FIX
CONTROL_FIX = "run it as root (sudo agtapctl ...), or ask for polkit authorization of io.agtap.manage"


class CtlError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


plain = unwrap      # Variants (nested) to plain Python values, for --json and printing


def ctl_error(e: ClientError, bus: str, control: bool) -> CtlError:
    """What a client error means to agtapctl's user: the message and the exit code."""
    text = safe_field(e.text or e.name)
    if isinstance(e, BusUnavailable):
        return CtlError(EXIT_NOT_RUNNING, f"cannot reach the {bus} bus ({text}): "
                        "is dbus running? (systemctl status dbus)")
    if isinstance(e, NoAnswer):
        within = f" within {e.timeout:.0f} s" if e.timeout else f" ({text})"
        return CtlError(EXIT_ERROR, f"agtap did not answer{within}: "
                        "is it stuck? (systemctl status agtap; journalctl -u agtap)")
    if isinstance(e, NotRunning):
        return CtlError(EXIT_NOT_RUNNING, "agtap is not running: sudo systemctl start agtap")
    if isinstance(e, AccessDenied):
        return CtlError(EXIT_DENIED, f"access denied: {CONTROL_FIX if control else READ_FIX}")
    if e.name == B.ERROR_INVALID_ARGUMENT:
        return CtlError(EXIT_ERROR, f"invalid argument: {text}")
    if e.name == B.ERROR_NOT_FOUND:
        return CtlError(EXIT_ERROR, f"not found: {text}")
    return CtlError(EXIT_ERROR, f"{safe_field(e.name)}: {text}")


def _num(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) else safe_field(n)


def _ago(seconds: float) -> str:
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return (f"{d}d " if d else "") + (f"{h}h " if h or d else "") + f"{m}m {s}s"


def call_line(ev: dict[str, Any]) -> str:
    """time, proc[pid], provider, model, in/out tokens, latency, stop reason — one line, terminal-safe."""
    ts = str(ev.get("ts") or "")
    try:
        t = dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone().strftime("%H:%M:%S")
    except ValueError:
        t = safe_field(ts, 8)
    tok = f"{ev.get('input_tokens') if ev.get('input_tokens') is not None else '-'}/" \
          f"{ev.get('output_tokens') if ev.get('output_tokens') is not None else '-'}"
    lat = ev.get("latency_ms")
    lat_s = f"{lat:.0f} ms" if isinstance(lat, (int, float)) else "-"
    stop = ev.get("stop_reason") or (f"incomplete: {ev.get('incomplete_reason')}" if ev.get("incomplete") else "-")
    proc = f"{safe_field(ev.get('proc'), 15)}[{safe_field(ev.get('pid'), 10)}]"
    return (f"{t}  {proc:<22} {safe_field(ev.get('provider'), 10):<10} {safe_field(ev.get('model') or '-', 40):<32} "
            f"{safe_field(tok, 23):>11} {lat_s:>9}  {safe_field(stop, 40)}")


def stat_lines(stats: dict, prefix: str = "") -> list[str]:
    """`agtapctl stats`: one line per counter; a dict of dicts (the sinks) one line per inner dict."""
    out = []
    for k, v in stats.items():
        if isinstance(v, dict) and any(isinstance(x, dict) for x in v.values()):
            out += stat_lines(v, f"{prefix}{safe_field(k)} ")
            continue
        shown = (", ".join(f"{safe_field(a)}={_num(b)}" for a, b in v.items()) if isinstance(v, dict)
                 else ", ".join(safe_field(x) for x in v) if isinstance(v, list) else _num(v))
        out.append(f"{prefix}{safe_field(k)}: {shown}")
    return out


def print_status(props: dict, stats: dict) -> None:
    state = "capturing" if props.get("Capturing") else "stopped (probes detached)"
    started = dt.datetime.fromtimestamp(props.get("StartedAt", 0) / 1e6).strftime("%Y-%m-%d %H:%M:%S")
    f = props.get("Filters", {})
    print(f"agtap {safe_field(props.get('Version'))}: {state}; up {_ago(stats.get('uptime_s', 0))} (since {started})")
    targets = props.get("Targets", [])
    print(f"targets: {len(targets)}" + "".join(f"\n  {safe_field(t)}" for t in targets))
    scope = stats.get("probe_scope", "")
    print("probes: " + (f"per process, {_num(stats.get('watched_processes', 0))} processes watched"
                        if scope == "process" else "host-wide" if scope == "host" else "?")
          + f"; {_num(stats.get('uprobes', 0))} uprobes; late attach {_num(stats.get('late_attach', 0))}"
          + (f"; demoted {_num(stats['demoted'])}" if stats.get("demoted") else "")
          + (f"; held at open {_num(stats['held_opens'])} ({_num(stats.get('hold_timeouts', 0))} too long)"
             if stats.get("held_opens") else ""))
    print("filter: pids " + (", ".join(map(str, f.get("pids", []))) or "any")
          + "; process names " + (", ".join(safe_field(c) for c in f.get("comms", [])) or "any"))
    by = ", ".join(f"{safe_field(k)} {_num(v)}" for k, v in sorted(stats.get("calls_by_provider", {}).items()))
    print(f"calls: {_num(stats.get('calls', 0))}" + (f" ({by})" if by else "")
          + f"; tokens in {_num(stats.get('input_tokens', 0))} out {_num(stats.get('output_tokens', 0))}"
          + (f"; cost ${stats['cost_usd']:,.4f}" if isinstance(stats.get("cost_usd"), float) and stats["cost_usd"] else ""))
    print(f"lost records: {_num(stats.get('lost_records', 0))}; cut: {_num(stats.get('cut_records', 0))}; "
          f"parse errors: {_num(stats.get('parse_errors', 0))}; "
          f"answers without their request: {_num(stats.get('unmatched_responses', 0))}")


async def follow(client: BusClient, as_json: bool) -> asyncio.Future:
    """Print every CallCaptured from now on; the future's result says why it ended (the service or
    the bus went away). Returns once subscribed."""
    gone: asyncio.Future = asyncio.get_running_loop().create_future()

    def end(reason: str) -> None:
        if not gone.done():
            gone.set_result(reason)

    client.on_call(lambda ev: emit_event(ev, as_json))
    client.on_service_change(lambda running: None if running else end("agtap stopped"))
    client.on_disconnect(lambda: end("the bus connection closed"))
    await client.watch()
    if not await client.service_running():        # learns the owner: only its signals count
        end("agtap stopped")
    return gone


_shown: dict[str, None] = {}   # event ids printed, newest last: with --follow a call may come both as recent and as a signal


def emit_event(line: str | dict, as_json: bool) -> None:
    """Print one event (its JSON line, or the dict a CallCaptured signal carried), once per id."""
    try:
        ev = line if isinstance(line, dict) else json.loads(line)
    except ValueError:
        return
    if not isinstance(ev, dict):
        return
    eid = ev.get("event_id")
    if isinstance(eid, str):
        if eid in _shown:
            return
        _shown[eid] = None
        if len(_shown) > 10000:
            del _shown[next(iter(_shown))]
    print(json.dumps(ev, ensure_ascii=True, separators=(",", ":")) if as_json else call_line(ev), flush=True)


class _Session:
    """One agtapctl command's connection: the client and the interface its methods are on."""

    def __init__(self, client: BusClient, control: bool, as_json: bool):
        self.client, self.as_json = client, as_json
        self.iface = B.CONTROL_INTERFACE if control else B.READ_INTERFACE

    async def call(self, member: str, signature: str = "", body: list | None = None) -> list:
        return await self.client.call(member, signature, body, interface=self.iface)


async def _status(args: argparse.Namespace, s: _Session) -> None:
    props = await s.client.properties()
    (stats,) = await s.call("GetStats")
    stats = plain(stats)
    if s.as_json:
        print(json.dumps({"version": props.get("Version"), "capturing": props.get("Capturing"),
                          "filters": props.get("Filters"), "targets": props.get("Targets"),
                          "started_at": props.get("StartedAt"), "stats": stats}, ensure_ascii=True))
    else:
        print_status(props, stats)


async def _stats(args: argparse.Namespace, s: _Session) -> None:
    (stats,) = await s.call("GetStats")
    stats = plain(stats)
    if s.as_json:
        print(json.dumps(stats, ensure_ascii=True))
    else:
        for line in stat_lines(stats):
            print(line)


async def _calls(args: argparse.Namespace, s: _Session) -> None:
    gone = await follow(s.client, s.as_json) if args.follow else None   # subscribed first: nothing falls between
    (lines,) = await s.call("GetRecentCalls", "u", [min(args.n, 2**32 - 1)])
    for line in lines:
        emit_event(line, s.as_json)
    if gone is not None:
        raise CtlError(EXIT_NOT_RUNNING, await gone)   # until the service goes away, or Ctrl-C


async def _body(args: argparse.Namespace, s: _Session) -> None:
    (text,) = await s.call("GetCallBodies", "s", [args.event_id])
    try:
        print(json.dumps(json.loads(text), ensure_ascii=True, indent=None if s.as_json else 2))
    except ValueError:
        print(printable(text))


async def _start(args: argparse.Namespace, s: _Session) -> None:
    await s.call("Start")
    print("agtap: capturing")


async def _stop(args: argparse.Namespace, s: _Session) -> None:
    await s.call("Stop")
    print("agtap: stopped capturing (probes detached; the service keeps running)")


async def _filter(args: argparse.Namespace, s: _Session) -> None:
    if args.clear:
        await s.call("ClearFilter")
        print("agtap: filter cleared: capturing every process")
    else:
        await s.call("SetFilter", "auas", [args.pid or [], args.comm or []])
        print("agtap: filter set: pids " + (", ".join(map(str, args.pid or [])) or "any")
              + "; process names " + (", ".join(safe_field(c) for c in args.comm or []) or "any"))


async def _clean(args: argparse.Namespace, s: _Session) -> None:
    await s.call("Clean")
    print("agtap: removed stored bodies and event logs")


READ_COMMANDS = {"status": _status, "stats": _stats, "calls": _calls, "body": _body}
CONTROL_COMMANDS = {"start": _start, "stop": _stop, "filter": _filter, "clean": _clean}


async def run(args: argparse.Namespace) -> int:
    control = args.cmd in CONTROL_COMMANDS
    client = BusClient(args.bus, timeout=float(os.environ.get("AGTAPCTL_TIMEOUT", READ_TIMEOUT_S)))
    try:
        await client.connect(watch=False)
        command = CONTROL_COMMANDS[args.cmd] if control else READ_COMMANDS[args.cmd]
        await command(args, _Session(client, control, getattr(args, "json", False)))
        return EXIT_OK
    except ClientError as e:
        raise ctl_error(e, args.bus, control) from None
    finally:
        client.close()


EPILOG = """examples:
    agtapctl status                        # state, targets, filter and counters (group agtap)
    agtapctl calls -n 5                    # the last five calls
    agtapctl calls --follow --json         # new calls as they come, one JSON object a line
    agtapctl body ID                       # a call's stored request and response, secrets removed
    sudo agtapctl filter --comm python3    # capture only processes named python3
    sudo agtapctl filter --clear           # capture every process again

exit status: 0 ok, 1 error, 3 agtap not running (or no bus), 4 access denied
(the message says what to do)."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="agtapctl", description="Control and query the agtap service.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bus", choices=("system", "session"), default="system", help="bus to use (default: system)")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def read(name, help_):
        s = sub.add_parser(name, help=help_)
        s.add_argument("--json", action="store_true", help="machine-readable output")
        return s
    read("status", "state, targets, filter and counters")
    read("stats", "all counters")
    c = read("calls", "recent calls, oldest first")
    c.add_argument("-n", type=int, default=20, help="how many (default 20)")
    c.add_argument("-f", "--follow", action="store_true", help="keep printing new calls")
    b = read("body", "the stored (redacted) request and response of a call")
    b.add_argument("event_id", metavar="EVENT_ID",
                   help="the call's event_id (from `agtapctl calls --json`; not `id`, the API's response id)")
    sub.add_parser("start", help="attach the probes")
    sub.add_parser("stop", help="detach the probes (the service keeps running)")
    f = sub.add_parser("filter", help="capture only some processes")
    f.add_argument("--pid", type=int, action="append", help="a process id (repeatable)")
    f.add_argument("--comm", action="append", help="a process name, as `ps -o comm` shows it (repeatable)")
    f.add_argument("--clear", action="store_true", help="capture every process again")
    sub.add_parser("clean", help="remove stored bodies and event logs")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.cmd == "filter" and not args.clear and not (args.pid or args.comm):
        p.error("filter: give --pid and/or --comm, or --clear")
    if args.cmd == "calls" and args.n < 0:
        p.error("calls: -n must be ≥ 0")
    try:
        return asyncio.run(run(args))
    except CtlError as e:
        print(f"agtapctl: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
