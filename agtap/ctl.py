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

from dbus_next import BusType, Message, MessageType, Variant
from dbus_next.aio import MessageBus

from agtap import busnames as B
from agtap.textsafe import printable, safe_field

EXIT_OK, EXIT_ERROR, EXIT_NOT_RUNNING, EXIT_DENIED = 0, 1, 3, 4
NOT_RUNNING = ("org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner")
DENIED = ("org.freedesktop.DBus.Error.AccessDenied", B.ERROR_ACCESS_DENIED)
READ_TIMEOUT_S = float(os.environ.get("AGTAPCTL_TIMEOUT", "25"))
CONTROL_TIMEOUT_S = max(READ_TIMEOUT_S, 200.0)
READ_FIX = B.JOIN_GROUP_FIX
CONTROL_FIX = "run it as root (sudo agtapctl ...), or ask for polkit authorization of io.agtap.manage"


class CtlError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def plain(v: Any) -> Any:
    """Variants (nested) to plain Python values, for --json and printing."""
    if isinstance(v, Variant):
        return plain(v.value)
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v


class Client:
    def __init__(self, bus: str, control: bool = False):
        self.bus_kind, self.control = bus, control
        self.bus: MessageBus | None = None

    async def connect(self) -> None:
        try:
            self.bus = await MessageBus(bus_type=BusType.SESSION if self.bus_kind == "session"
                                        else BusType.SYSTEM).connect()
        except Exception as e:
            raise CtlError(EXIT_NOT_RUNNING, f"cannot reach the {self.bus_kind} bus ({e}): "
                           "is dbus running? (systemctl status dbus)") from None

    async def call(self, member: str, signature: str = "", body: list | None = None, *,
                   interface: str | None = None) -> list:
        iface = interface or (B.CONTROL_INTERFACE if self.control else B.READ_INTERFACE)
        # Control may wait on a polkit password prompt, or on the probes attaching (BCC compiles).
        timeout = CONTROL_TIMEOUT_S if iface == B.CONTROL_INTERFACE else READ_TIMEOUT_S
        try:
            reply = await asyncio.wait_for(self.bus.call(Message(
                destination=B.BUS_NAME, path=B.OBJECT_PATH, interface=iface,
                member=member, signature=signature, body=body or [])), timeout)
        except asyncio.TimeoutError:
            raise CtlError(EXIT_ERROR, f"agtap did not answer within {timeout:.0f} s: "
                           "is it stuck? (systemctl status agtap; journalctl -u agtap)") from None
        if reply.message_type == MessageType.ERROR:
            text = safe_field(reply.body[0] if reply.body else reply.error_name)
            if reply.error_name in NOT_RUNNING:
                raise CtlError(EXIT_NOT_RUNNING, "agtap is not running: sudo systemctl start agtap")
            if reply.error_name in DENIED:
                fix = CONTROL_FIX if iface == B.CONTROL_INTERFACE else READ_FIX
                raise CtlError(EXIT_DENIED, f"access denied: {fix}")
            if reply.error_name == B.ERROR_INVALID_ARGUMENT:
                raise CtlError(EXIT_ERROR, f"invalid argument: {text}")
            if reply.error_name == B.ERROR_NOT_FOUND:
                raise CtlError(EXIT_ERROR, f"not found: {text}")
            raise CtlError(EXIT_ERROR, f"{safe_field(reply.error_name)}: {text}")
        return reply.body

    async def properties(self) -> dict[str, Any]:
        (props,) = await self.call("GetAll", "s", [B.READ_INTERFACE], interface="org.freedesktop.DBus.Properties")
        return plain(props)


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
    print("filter: pids " + (", ".join(map(str, f.get("pids", []))) or "any")
          + "; process names " + (", ".join(safe_field(c) for c in f.get("comms", [])) or "any"))
    by = ", ".join(f"{safe_field(k)} {_num(v)}" for k, v in sorted(stats.get("calls_by_provider", {}).items()))
    print(f"calls: {_num(stats.get('calls', 0))}" + (f" ({by})" if by else "")
          + f"; tokens in {_num(stats.get('input_tokens', 0))} out {_num(stats.get('output_tokens', 0))}"
          + (f"; cost ${stats['cost_usd']:,.4f}" if isinstance(stats.get("cost_usd"), float) and stats["cost_usd"] else ""))
    print(f"lost records: {_num(stats.get('lost_records', 0))}; cut: {_num(stats.get('cut_records', 0))}; "
          f"parse errors: {_num(stats.get('parse_errors', 0))}; "
          f"answers without their request: {_num(stats.get('unmatched_responses', 0))}")


async def follow(client: Client, as_json: bool) -> int:
    """Print every CallCaptured until the service goes away (exit 3) or the user presses Ctrl-C."""
    gone: asyncio.Future = asyncio.get_running_loop().create_future()
    rules = [f"type='signal',sender='{B.BUS_NAME}',interface='{B.READ_INTERFACE}',member='CallCaptured'",
             "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',"
             f"member='NameOwnerChanged',arg0='{B.BUS_NAME}'"]
    for rule in rules:
        reply = await client.bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                                              interface="org.freedesktop.DBus", member="AddMatch",
                                              signature="s", body=[rule]))
        if reply.message_type == MessageType.ERROR:
            raise CtlError(EXIT_ERROR, f"subscribing: {safe_field(reply.body[0] if reply.body else reply.error_name)}")

    def on_msg(msg: Message):
        if msg.message_type != MessageType.SIGNAL:
            return
        if msg.member == "CallCaptured" and msg.body:
            emit_event(msg.body[0], as_json)
        elif msg.member == "NameOwnerChanged" and msg.body[0] == B.BUS_NAME and not msg.body[2] and not gone.done():
            gone.set_result(None)

    client.bus.add_message_handler(on_msg)
    disconnect = asyncio.ensure_future(client.bus.wait_for_disconnect())
    await asyncio.wait({gone, disconnect}, return_when=asyncio.FIRST_COMPLETED)
    raise CtlError(EXIT_NOT_RUNNING, "agtap stopped" if gone.done() else "the bus connection closed")


_shown: dict[str, None] = {}   # ids printed, newest last: with --follow a call may come both as recent and as a signal


def emit_event(line: str, as_json: bool) -> None:
    try:
        ev = json.loads(line)
    except ValueError:
        return
    if not isinstance(ev, dict):
        return
    if isinstance(ev.get("id"), str):
        if ev["id"] in _shown:
            return
        _shown[ev["id"]] = None
        if len(_shown) > 10000:
            del _shown[next(iter(_shown))]
    print(json.dumps(ev, ensure_ascii=True, separators=(",", ":")) if as_json else call_line(ev), flush=True)


async def run(args: argparse.Namespace) -> int:
    control = args.cmd in ("start", "stop", "filter", "clean")
    client = Client(args.bus, control)
    await client.connect()
    as_json = getattr(args, "json", False)
    if args.cmd == "status":
        props = await client.properties()
        (stats,) = await client.call("GetStats")
        stats = plain(stats)
        if as_json:
            print(json.dumps({"version": props.get("Version"), "capturing": props.get("Capturing"),
                              "filters": props.get("Filters"), "targets": props.get("Targets"),
                              "started_at": props.get("StartedAt"), "stats": stats}, ensure_ascii=True))
        else:
            print_status(props, stats)
    elif args.cmd == "stats":
        (stats,) = await client.call("GetStats")
        stats = plain(stats)
        if as_json:
            print(json.dumps(stats, ensure_ascii=True))
        else:
            for line in stat_lines(stats):
                print(line)
    elif args.cmd == "calls":
        if args.follow:                      # subscribe first, so nothing falls between the two
            task = asyncio.ensure_future(follow(client, as_json))
            await asyncio.sleep(0)
        (lines,) = await client.call("GetRecentCalls", "u", [min(args.n, 2**32 - 1)])
        for line in lines:
            emit_event(line, as_json)
        if args.follow:
            return await task
    elif args.cmd == "body":
        (text,) = await client.call("GetCallBodies", "s", [args.id])
        try:
            print(json.dumps(json.loads(text), ensure_ascii=True, indent=None if as_json else 2))
        except ValueError:
            print(printable(text))
    elif args.cmd == "start":
        await client.call("Start")
        print("agtap: capturing")
    elif args.cmd == "stop":
        await client.call("Stop")
        print("agtap: stopped capturing (probes detached; the service keeps running)")
    elif args.cmd == "filter":
        if args.clear:
            await client.call("ClearFilter")
            print("agtap: filter cleared: capturing every process")
        else:
            await client.call("SetFilter", "auas", [args.pid or [], args.comm or []])
            print("agtap: filter set: pids " + (", ".join(map(str, args.pid or [])) or "any")
                  + "; process names " + (", ".join(safe_field(c) for c in args.comm or []) or "any"))
    elif args.cmd == "clean":
        await client.call("Clean")
        print("agtap: removed stored bodies and event logs")
    return EXIT_OK


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
    b.add_argument("id", help="the call's id (from `agtapctl calls --json`)")
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
