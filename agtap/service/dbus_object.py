"""io.agtap.Agtap1 on the bus: a thin adapter over the Controller.

Access is checked twice: by the bus policy (dbus/io.agtap.Agtap1.conf) and
here, per call, from the caller's uid as the bus daemon reports it
(GetConnectionUnixUser). dbus-next 0.2.3 does not hand the sender to method
handlers and runs its handlers synchronously, so a message handler (which runs
before dispatch) takes every call to our object, checks it asynchronously, and
only then lets dbus-next dispatch it (or replies AccessDenied).

    read    (io.agtap.Agtap1, Properties, Introspectable): root or group agtap
    control (io.agtap.Agtap1.Control): root, or polkit io.agtap.manage
            (CheckAuthorization on the system-bus-name subject); with no
            polkit on the bus, root only.

Every method answers with a named io.agtap.Error.* on failure, never a traceback.

    io.agtap.Agtap1 at /io/agtap/Agtap1 (names in agtap/busnames.py)
      properties  Version s, Capturing b, Filters a{sv} {"pids": au, "comms": as},
                  Targets as, StartedAt t (µs since the epoch); PropertiesChanged on change
      GetStats() -> a{sv}            Controller.get_stats(): counts as t, cost/uptime as d
      GetRecentCalls(u n) -> as      the last n events (JSON, as in events.jsonl), newest last
      GetCallBodies(s event_id) -> s the call's stored, redacted body file (JSON); NotFound, InvalidArgument
      signal CallCaptured(s json)    every finished call
    io.agtap.Agtap1.Control
      Start() Stop() SetFilter(au pids, as comms) ClearFilter() Clean()
"""

from __future__ import annotations

import asyncio
import collections
import functools
import grp
import json
import logging
import os
import pwd
from typing import Any

from dbus_next import BusType, DBusError, Message, MessageFlag, MessageType, NameFlag, RequestNameReply, Variant
from dbus_next.aio import MessageBus
from dbus_next.constants import PropertyAccess
from dbus_next.service import ServiceInterface, dbus_property, method, signal

from agtap import busnames as B
from agtap.service.controller import Controller
from agtap.service.dbusnext_private import MAX_QUEUED_MESSAGES, dispatch, queued_messages, tolerate_slow_bus
from agtap.service.errors import ControllerError, InvalidArgument, NotFound

POLKIT_NAME = "org.freedesktop.PolicyKit1"
POLKIT_PATH = "/org/freedesktop/PolicyKit1/Authority"
POLKIT_IFACE = "org.freedesktop.PolicyKit1.Authority"
POLKIT_ALLOW_USER_INTERACTION = 1
POLKIT_TIMEOUT_S = 120
READ_IFACES = {B.READ_INTERFACE, "org.freedesktop.DBus.Properties", "org.freedesktop.DBus.Introspectable", None}

log = logging.getLogger("agtap.dbus")


def _dbus_error(e: BaseException) -> DBusError:
    if isinstance(e, DBusError):
        return e
    if isinstance(e, InvalidArgument):
        return DBusError(B.ERROR_INVALID_ARGUMENT, str(e))
    if isinstance(e, NotFound):
        return DBusError(B.ERROR_NOT_FOUND, str(e))
    if isinstance(e, ControllerError):
        return DBusError(B.ERROR_FAILED, str(e))
    log.exception("internal error in a D-Bus method", exc_info=e)
    return DBusError(B.ERROR_FAILED, f"internal error: {type(e).__name__}; see the service log (journalctl -u agtap)")


def _guard(fn):
    """Map every exception to a named DBusError (dbus-next would otherwise send a traceback)."""
    if asyncio.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def wrapped(self, *args):
            try:
                return await fn(self, *args)
            except Exception as e:
                raise _dbus_error(e) from None
    else:
        @functools.wraps(fn)
        def wrapped(self, *args):
            try:
                return fn(self, *args)
            except Exception as e:
                raise _dbus_error(e) from None
    return wrapped


def to_variant(v: Any) -> Variant:
    """A plain value (from Controller.get_stats) as a Variant with the obvious signature."""
    if isinstance(v, bool):
        return Variant("b", v)
    if isinstance(v, int):
        return Variant("t" if v >= 0 else "x", v)
    if isinstance(v, float):
        return Variant("d", v)
    if isinstance(v, str):
        return Variant("s", v)
    if isinstance(v, (list, tuple)):
        if v and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            return Variant("at", list(v))
        return Variant("as", [str(x) for x in v])
    if isinstance(v, dict):
        if all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v.values()):
            return Variant("a{st}", {str(k): x for k, x in v.items()})
        return Variant("a{sv}", {str(k): to_variant(x) for k, x in v.items()})
    return Variant("s", str(v))


class ReadInterface(ServiceInterface):
    def __init__(self, ctl: Controller, version: str):
        super().__init__(B.READ_INTERFACE)
        self.ctl = ctl
        self.version = version

    @dbus_property(access=PropertyAccess.READ)
    def Version(self) -> "s":
        return self.version

    @dbus_property(access=PropertyAccess.READ)
    def Capturing(self) -> "b":
        return self.ctl.capturing

    @dbus_property(access=PropertyAccess.READ)
    def Filters(self) -> "a{sv}":
        return {"pids": Variant("au", list(self.ctl.pids)), "comms": Variant("as", list(self.ctl.comms))}

    @dbus_property(access=PropertyAccess.READ)
    def Targets(self) -> "as":
        return self.ctl.targets

    @dbus_property(access=PropertyAccess.READ)
    def StartedAt(self) -> "t":
        """Microseconds since the epoch, as systemd's timestamps."""
        return int(self.ctl.started_at * 1_000_000)

    @method()
    @_guard
    def GetStats(self) -> "a{sv}":
        return {k: to_variant(v) for k, v in self.ctl.get_stats().items()}

    @method()
    @_guard
    def GetRecentCalls(self, n: "u") -> "as":
        return self.ctl.recent_calls(n)

    @method()
    @_guard
    def GetCallBodies(self, event_id: "s") -> "s":
        return self.ctl.call_bodies(event_id)

    @signal()
    def CallCaptured(self, event_json) -> "s":
        return event_json

    def changed(self) -> None:
        self.emit_properties_changed({
            "Capturing": self.ctl.capturing,
            "Targets": self.ctl.targets,
            "Filters": {"pids": Variant("au", list(self.ctl.pids)), "comms": Variant("as", list(self.ctl.comms))},
        })


class ControlInterface(ServiceInterface):
    def __init__(self, ctl: Controller, read: ReadInterface, on_change=None):
        super().__init__(B.CONTROL_INTERFACE)
        self.ctl = ctl
        self.read = read
        self.on_change = on_change or (lambda: None)

    def _changed(self) -> None:
        self.read.changed()
        self.on_change()

    @method()
    @_guard
    async def Start(self):
        await asyncio.to_thread(self.ctl.start)
        self._changed()

    @method()
    @_guard
    async def Stop(self):
        await asyncio.to_thread(self.ctl.stop)
        self._changed()

    @method()
    @_guard
    def SetFilter(self, pids: "au", comms: "as"):
        self.ctl.set_filter(pids, comms)
        self._changed()

    @method()
    @_guard
    def ClearFilter(self):
        self.ctl.clear_filter()
        self._changed()

    @method()
    @_guard
    async def Clean(self):
        await asyncio.to_thread(self.ctl.clean)


def is_reader(uid: int) -> bool:
    """root, or a member of group agtap (primary or supplementary, from the user database)."""
    if uid == 0:
        return True
    try:
        gid = grp.getgrnam(B.GROUP).gr_gid
        pw = pwd.getpwuid(uid)
    except KeyError:
        return False
    return gid in os.getgrouplist(pw.pw_name, pw.pw_gid)


class Gate:
    """Checks each call to our object before dbus-next dispatches it."""

    def __init__(self, bus: MessageBus, *, use_polkit: bool = True):
        self.bus = bus
        self.use_polkit = use_polkit
        self._passed: set[tuple[str, int]] = set()
        self._uids: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._tasks: set[asyncio.Task] = set()

    def handler(self, msg: Message):
        if msg.message_type != MessageType.METHOD_CALL or msg.path != B.OBJECT_PATH:
            return None
        key = (msg.sender, msg.serial)
        if key in self._passed:
            self._passed.discard(key)
            return None
        if msg.interface == B.CONTROL_INTERFACE:
            level = "control"
        elif msg.interface in READ_IFACES:
            level = "read"
        else:
            return None          # Peer (Ping, GetMachineId): harmless
        t = asyncio.ensure_future(self._check(msg, level))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return True

    def _reply_error(self, msg: Message, name: str, text: str) -> None:
        if not msg.flags & MessageFlag.NO_REPLY_EXPECTED:
            self.bus.send(Message.new_error(msg, name, text))

    async def _check(self, msg: Message, level: str) -> None:
        try:
            uid = await self.uid(msg.sender)
            if uid == os.geteuid():
                ok = True          # our own uid (a session bus): it could ptrace us anyway
            elif level == "read":
                ok = await asyncio.to_thread(is_reader, uid)
                why = f"reading agtap's data needs root or group {B.GROUP}"
            else:
                ok = uid == 0 or await self.polkit(msg.sender)
                why = f"controlling agtap needs root or polkit authorization for {B.POLKIT_ACTION_MANAGE}"
        except Exception as e:
            log.warning("authorizing %s.%s from %s: %s", msg.interface, msg.member, msg.sender, e)
            self._reply_error(msg, B.ERROR_FAILED, f"could not check the caller's permission: {e}")
            return
        if not ok:
            log.info("denied %s.%s to uid %s (%s)", msg.interface, msg.member, uid, msg.sender)
            self._reply_error(msg, B.ERROR_ACCESS_DENIED, why)
            return
        self._passed.add((msg.sender, msg.serial))
        try:
            dispatch(self.bus, msg)            # dbus-next's own dispatch, now that the call is allowed
        finally:
            self._passed.discard((msg.sender, msg.serial))

    async def _call(self, **kw) -> Message:
        reply = await self.bus.call(Message(**kw))
        if reply.message_type == MessageType.ERROR:
            raise DBusError(reply.error_name, (reply.body or [""])[0])
        return reply

    async def uid(self, sender: str) -> int:
        if sender in self._uids:
            return self._uids[sender]
        reply = await self._call(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                                 interface="org.freedesktop.DBus", member="GetConnectionUnixUser",
                                 signature="s", body=[sender])
        uid = int(reply.body[0])
        self._uids[sender] = uid           # unique names are never reused on a bus
        while len(self._uids) > 4096:
            self._uids.popitem(last=False)
        return uid

    async def polkit(self, sender: str) -> bool:
        if not self.use_polkit:
            return False
        subject = ["system-bus-name", {"name": Variant("s", sender)}]
        try:
            reply = await asyncio.wait_for(self._call(
                destination=POLKIT_NAME, path=POLKIT_PATH, interface=POLKIT_IFACE,
                member="CheckAuthorization", signature="(sa{sv})sa{ss}us",
                body=[subject, B.POLKIT_ACTION_MANAGE, {}, POLKIT_ALLOW_USER_INTERACTION, ""]), POLKIT_TIMEOUT_S)
        except DBusError as e:
            if e.type in ("org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner"):
                return False               # no polkit on this bus: root only
            raise
        authorized, _challenge, _details = reply.body[0]
        return bool(authorized)


class BusUnavailable(Exception):
    pass


class DbusService:
    """Connects, exports the object, owns the name; forwards CallCaptured."""

    def __init__(self, ctl: Controller, bus: str, version: str, *, on_change=None):
        self.ctl = ctl
        self.bus_kind = bus
        self.read = ReadInterface(ctl, version)
        self.control = ControlInterface(ctl, self.read, on_change)
        self.bus: MessageBus | None = None
        self._unsubscribe = None

    async def start(self) -> None:
        bus_type = BusType.SESSION if self.bus_kind == "session" else BusType.SYSTEM
        try:
            self.bus = await MessageBus(bus_type=bus_type).connect()
        except Exception as e:
            raise BusUnavailable(f"cannot connect to the {self.bus_kind} bus: {e}") from e
        tolerate_slow_bus(self.bus)
        gate = Gate(self.bus)
        self.bus.add_message_handler(gate.handler)
        self.bus.export(B.OBJECT_PATH, self.read)
        self.bus.export(B.OBJECT_PATH, self.control)
        try:
            reply = await self.bus.request_name(B.BUS_NAME, NameFlag.DO_NOT_QUEUE)
        except DBusError as e:
            self.bus.disconnect()
            raise BusUnavailable(f"cannot own {B.BUS_NAME} on the {self.bus_kind} bus: {e.text} "
                                 "(is dbus/io.agtap.Agtap1.conf installed in /usr/share/dbus-1/system.d?)") from e
        if reply not in (RequestNameReply.PRIMARY_OWNER, RequestNameReply.ALREADY_OWNER):
            self.bus.disconnect()
            raise BusUnavailable(f"{B.BUS_NAME} is already owned on the {self.bus_kind} bus: "
                                 "another agtap is running (systemctl status agtap)")
        self._unsubscribe = self.ctl.subscribe(self._emit)

    def _emit(self, event: dict[str, Any]) -> None:
        if self.bus is not None and self.bus.connected:
            if queued_messages(self.bus) >= MAX_QUEUED_MESSAGES:
                self.ctl.signals_dropped += 1     # the bus is not draining: memory stays bounded
                return
            self.read.CallCaptured(json.dumps(event, separators=(",", ":"), default=str))

    async def wait_lost(self) -> None:
        """Returns when the connection to the bus ends without our asking."""
        if self.bus is not None:
            await self.bus.wait_for_disconnect()

    def properties_changed(self) -> None:
        if self.bus is not None and self.bus.connected:
            self.read.changed()

    async def stop(self) -> None:
        if self._unsubscribe:
            self._unsubscribe()
        if self.bus is not None:
            try:
                await asyncio.wait_for(self.bus.release_name(B.BUS_NAME), 0.5)
            except Exception:
                pass
            self.bus.disconnect()
            self.bus = None
