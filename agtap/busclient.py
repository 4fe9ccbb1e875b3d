"""The one D-Bus client of the agtap service: agtapctl and agtap-tui both use it.

Raw messages (no introspection) so that a denied or missing service gives one
clear error instead of an introspection failure. Every reply is checked here;
callers see dicts, lists and these exceptions only:

    BusUnavailable  the bus itself cannot be reached
    NotRunning      nobody owns io.agtap.Agtap1
      NoAnswer      ... or its owner did not answer in time (stuck, or busy)
    AccessDenied    the bus policy or the service refused (not in group agtap,
                    or no polkit authorisation for a control method)
    ServiceError    any other D-Bus error (name, text): InvalidArgument, NotFound, Failed ...

Timeouts: a read waits `timeout` (READ_TIMEOUT_S for agtapctl, which waits for
its answer; DASHBOARD_TIMEOUT_S for agtap-tui, which asks again); a control
method (Start may compile the BPF programs, or wait on a polkit prompt) waits
at least CONTROL_TIMEOUT_S. What an error means to a user (exit codes, the
group-agtap hint) is each front end's to say.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable

from dbus_next import BusType, Message, MessageType, Variant
from dbus_next.aio import MessageBus

from agtap import busnames

DBUS = "org.freedesktop.DBus"
DBUS_PATH = "/org/freedesktop/DBus"
PROPS = "org.freedesktop.DBus.Properties"
READ_TIMEOUT_S = 25.0
DASHBOARD_TIMEOUT_S = 5.0
CONTROL_TIMEOUT_S = 200.0

_DENIED = {busnames.ERROR_ACCESS_DENIED, "org.freedesktop.DBus.Error.AccessDenied",
           "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"}
_NOT_RUNNING = {"org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner",
                "org.freedesktop.DBus.Error.UnknownObject"}
_NO_ANSWER = {"org.freedesktop.DBus.Error.NoReply", "org.freedesktop.DBus.Error.Timeout",
              "org.freedesktop.DBus.Error.TimedOut"}


class ClientError(Exception):
    def __init__(self, name: str = "", text: str = ""):
        super().__init__(f"{name}: {text}" if name else text)
        self.name = name
        self.text = text


class BusUnavailable(ClientError):
    pass


class NotRunning(ClientError):
    pass


class NoAnswer(NotRunning):
    timeout: float | None = None     # seconds waited, when it was our wait that ran out


class AccessDenied(ClientError):
    pass


class ServiceError(ClientError):
    pass


def _error(name: str, text: str) -> ClientError:
    if name in _DENIED:
        return AccessDenied(name, text)
    if name in _NO_ANSWER:
        return NoAnswer(name, text)
    if name in _NOT_RUNNING:
        return NotRunning(name, text)
    return ServiceError(name, text)


def unwrap(v: Any) -> Any:
    """Variants (nested in dicts and lists) -> plain Python values."""
    if isinstance(v, Variant):
        return unwrap(v.value)
    if isinstance(v, dict):
        return {k: unwrap(x) for k, x in v.items()}
    if isinstance(v, list):
        return [unwrap(x) for x in v]
    return v


class BusClient:
    """One connection to the bus, the agtap service's methods, and its signals."""

    def __init__(self, bus: str = "system", address: str | None = None, *, timeout: float = READ_TIMEOUT_S):
        self.bus_kind = bus
        self.address = address
        self.timeout = timeout
        self._bus: MessageBus | None = None
        self._owner: str | None = None  # unique name of the current service owner
        self._call_cbs: list[Callable[[dict], None]] = []
        self._owner_cbs: list[Callable[[bool], None]] = []
        self._disconnect_cbs: list[Callable[[], None]] = []

    # --- callbacks -------------------------------------------------------------
    def on_call(self, cb: Callable[[dict], None]) -> None:
        """cb(event_dict) for every CallCaptured signal from the service."""
        self._call_cbs.append(cb)

    def on_service_change(self, cb: Callable[[bool], None]) -> None:
        """cb(running) when io.agtap.Agtap1 gains or loses its owner."""
        self._owner_cbs.append(cb)

    def on_disconnect(self, cb: Callable[[], None]) -> None:
        """cb() when the bus connection itself goes away."""
        self._disconnect_cbs.append(cb)

    @property
    def connected(self) -> bool:
        return self._bus is not None and self._bus.connected

    # --- connection ------------------------------------------------------------
    async def connect(self, *, watch: bool = True) -> None:
        """Connect; `watch`: also receive CallCaptured and the service's comings and goings."""
        bus_type = BusType.SESSION if self.bus_kind == "session" else BusType.SYSTEM
        try:
            bus = MessageBus(bus_address=self.address, bus_type=bus_type)
            await asyncio.wait_for(bus.connect(), self.timeout)
        except Exception as e:  # no socket, auth failure, bad address, timeout
            raise BusUnavailable("", str(e) or type(e).__name__) from None
        self._bus = bus
        bus.add_message_handler(self._on_message)
        asyncio.ensure_future(self._watch_disconnect(bus))
        if watch:
            await self.watch()

    async def watch(self) -> None:
        """Receive CallCaptured (on_call) and NameOwnerChanged (on_service_change) from now on."""
        for rule in (
            f"type='signal',sender='{DBUS}',interface='{DBUS}',member='NameOwnerChanged',arg0='{busnames.BUS_NAME}'",
            f"type='signal',interface='{busnames.READ_INTERFACE}',member='CallCaptured',path='{busnames.OBJECT_PATH}'",
        ):
            await self._call(DBUS, DBUS_PATH, DBUS, "AddMatch", "s", [rule])

    async def _watch_disconnect(self, bus: MessageBus) -> None:
        try:
            await bus.wait_for_disconnect()
        except Exception:
            pass
        if bus is self._bus:
            self._bus = None
            self._owner = None
            for cb in list(self._disconnect_cbs):
                cb()

    def close(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            try:
                bus.disconnect()
            except Exception:
                pass

    # --- calls -----------------------------------------------------------------
    async def _call(self, dest: str, path: str, iface: str, member: str,
                    signature: str = "", body: list | None = None) -> list:
        if self._bus is None or not self._bus.connected:
            raise BusUnavailable("", "not connected to the bus")
        msg = Message(destination=dest, path=path, interface=iface, member=member,
                      signature=signature, body=body or [])
        timeout = max(self.timeout, CONTROL_TIMEOUT_S) if iface == busnames.CONTROL_INTERFACE else self.timeout
        try:
            reply = await asyncio.wait_for(self._bus.call(msg), timeout)
        except asyncio.TimeoutError:
            e = NoAnswer("timeout", f"{member}: no answer within {timeout:.0f} s")
            e.timeout = timeout
            raise e from None
        except ClientError:
            raise
        except Exception as e:  # connection lost mid-call
            raise BusUnavailable("", f"{member}: {e}") from None
        if reply is None:
            raise BusUnavailable("", f"{member}: no reply (connection closed)")
        if reply.message_type == MessageType.ERROR:
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            raise _error(reply.error_name or "", text)
        return reply.body

    async def call(self, member: str, signature: str = "", body: list | None = None, *,
                   interface: str = busnames.READ_INTERFACE) -> list:
        """A method of the agtap service; its reply's body."""
        return await self._call(busnames.BUS_NAME, busnames.OBJECT_PATH, interface, member, signature, body)


    async def service_running(self) -> bool:
        """NameHasOwner, remembering the owner so that only its signals count."""
        (has,) = await self._call(DBUS, DBUS_PATH, DBUS, "NameHasOwner", "s", [busnames.BUS_NAME])
        if not has:
            self._owner = None
            return False
        try:
            (self._owner,) = await self._call(DBUS, DBUS_PATH, DBUS, "GetNameOwner", "s", [busnames.BUS_NAME])
        except NotRunning:
            self._owner = None
            return False
        return True

    async def properties(self) -> dict[str, Any]:
        (props,) = await self._call(busnames.BUS_NAME, busnames.OBJECT_PATH, PROPS, "GetAll", "s",
                                    [busnames.READ_INTERFACE])
        return unwrap(props)

    async def get_stats(self) -> dict[str, Any]:
        (stats,) = await self.call("GetStats")
        return unwrap(stats)

    async def recent_calls(self, n: int) -> list[dict]:
        (items,) = await self.call("GetRecentCalls", "u", [int(n)])
        out = []
        for s in items:
            ev = _parse_event(s)
            if ev is not None:
                out.append(ev)
        return out

    async def call_bodies(self, event_id: str) -> Any:
        """The redacted bodies, parsed from JSON (the raw string when it is not JSON)."""
        (s,) = await self.call("GetCallBodies", "s", [event_id])
        try:
            return json.loads(s)
        except ValueError:
            return s

    async def start(self) -> None:
        await self.call("Start", interface=busnames.CONTROL_INTERFACE)

    async def stop(self) -> None:
        await self.call("Stop", interface=busnames.CONTROL_INTERFACE)

    # --- signals ---------------------------------------------------------------
    def _on_message(self, msg: Message) -> None:
        if msg.message_type != MessageType.SIGNAL:
            return None
        if msg.interface == DBUS and msg.member == "NameOwnerChanged" and msg.sender == DBUS:
            if len(msg.body) == 3 and msg.body[0] == busnames.BUS_NAME:
                new = msg.body[2]
                self._owner = new or None
                for cb in list(self._owner_cbs):
                    cb(bool(new))
        elif (msg.interface == busnames.READ_INTERFACE and msg.member == "CallCaptured"
              and msg.path == busnames.OBJECT_PATH):
            # Anyone may emit a signal with this name; only the service's count.
            if self._owner is None or msg.sender != self._owner:
                return None
            if msg.signature != "s" or not msg.body:
                return None
            ev = _parse_event(msg.body[0])
            if ev is not None:
                for cb in list(self._call_cbs):
                    cb(ev)
        return None


def _parse_event(s: Any) -> dict | None:
    try:
        ev = json.loads(s)
    except (TypeError, ValueError):
        return None
    return ev if isinstance(ev, dict) else None
