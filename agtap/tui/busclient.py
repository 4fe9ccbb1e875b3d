"""All of agtap-tui's D-Bus access, behind a plain-Python interface.

Raw messages (no introspection) so that a denied or missing service gives one
clear error instead of an introspection failure. Every reply is checked here;
callers see dicts, lists and these exceptions only:

    BusUnavailable  the bus itself cannot be reached
    NotRunning      nobody owns io.agtap.Agtap1
    AccessDenied    the bus policy or the service refused (not in group agtap,
                    or no polkit authorisation for a control method)
    ServiceError    any other D-Bus error (name, text)
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
TIMEOUT = 5.0

_DENIED = {busnames.ERROR_ACCESS_DENIED, "org.freedesktop.DBus.Error.AccessDenied",
           "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"}
_NOT_RUNNING = {"org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner",
                "org.freedesktop.DBus.Error.NoReply", "org.freedesktop.DBus.Error.UnknownObject"}


class ClientError(Exception):
    def __init__(self, name: str = "", text: str = ""):
        super().__init__(f"{name}: {text}" if name else text)
        self.name = name
        self.text = text


class BusUnavailable(ClientError):
    pass


class NotRunning(ClientError):
    pass


class AccessDenied(ClientError):
    pass


class ServiceError(ClientError):
    pass


def _error(name: str, text: str) -> ClientError:
    if name in _DENIED:
        return AccessDenied(name, text)
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

    def __init__(self, bus: str = "system", address: str | None = None):
        self.bus_kind = bus
        self.address = address
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
    async def connect(self) -> None:
        bus_type = BusType.SESSION if self.bus_kind == "session" else BusType.SYSTEM
        try:
            bus = MessageBus(bus_address=self.address, bus_type=bus_type)
            await asyncio.wait_for(bus.connect(), TIMEOUT)
        except Exception as e:  # no socket, auth failure, bad address, timeout
            raise BusUnavailable("", str(e) or type(e).__name__) from None
        self._bus = bus
        bus.add_message_handler(self._on_message)
        for rule in (
            f"type='signal',sender='{DBUS}',interface='{DBUS}',member='NameOwnerChanged',arg0='{busnames.BUS_NAME}'",
            f"type='signal',interface='{busnames.READ_INTERFACE}',member='CallCaptured',path='{busnames.OBJECT_PATH}'",
        ):
            await self._call(DBUS, DBUS_PATH, DBUS, "AddMatch", "s", [rule])
        asyncio.ensure_future(self._watch_disconnect(bus))

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
        try:
            reply = await asyncio.wait_for(self._bus.call(msg), TIMEOUT)
        except asyncio.TimeoutError:
            raise NotRunning("timeout", f"{member}: no reply within {TIMEOUT:.0f}s") from None
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

    async def _svc(self, member: str, signature: str = "", body: list | None = None,
                   iface: str = busnames.READ_INTERFACE) -> list:
        return await self._call(busnames.BUS_NAME, busnames.OBJECT_PATH, iface, member, signature, body)

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
        (stats,) = await self._svc("GetStats")
        return unwrap(stats)

    async def recent_calls(self, n: int) -> list[dict]:
        (items,) = await self._svc("GetRecentCalls", "u", [int(n)])
        out = []
        for s in items:
            ev = _parse_event(s)
            if ev is not None:
                out.append(ev)
        return out

    async def call_bodies(self, call_id: str) -> Any:
        """The redacted bodies, parsed from JSON (the raw string when it is not JSON)."""
        (s,) = await self._svc("GetCallBodies", "s", [call_id])
        try:
            return json.loads(s)
        except ValueError:
            return s

    async def start(self) -> None:
        await self._svc("Start", iface=busnames.CONTROL_INTERFACE)

    async def stop(self) -> None:
        await self._svc("Stop", iface=busnames.CONTROL_INTERFACE)

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
