"""A raw D-Bus client the access tests run as other users (runuser -u USER -- python -m ...).

    python -m tests.support.dbus.client calls '[[iface, member, signature, body], ...]'
        -> prints a JSON list: {"ok": true, "body": ...} or {"ok": false, "error": name, "text": ...}
    python -m tests.support.dbus.client listen SECONDS
        -> AddMatch on the service's signals, prints "ready", then "got <json>" or "none"

Raw messages, no introspection: each call is tested on its own.
"""

from __future__ import annotations

import asyncio
import json
import sys

from dbus_next import BusType, Message, MessageType, Variant
from dbus_next.aio import MessageBus

from agtap import busnames as B


def plain(v):
    if isinstance(v, Variant):
        return plain(v.value)
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    return v


def to_body(sig: str, body: list) -> list:
    if sig == "ssv":      # Properties.Set: wrap the value
        return [body[0], body[1], Variant(body[2][0], body[2][1])]
    return body


async def calls(spec: list) -> list:
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    out = []
    for iface, member, sig, body in spec:
        reply = await bus.call(Message(destination=B.BUS_NAME, path=B.OBJECT_PATH, interface=iface,
                                       member=member, signature=sig, body=to_body(sig, body)))
        if reply.message_type == MessageType.ERROR:
            out.append({"ok": False, "error": reply.error_name, "text": (reply.body or [""])[0]})
        else:
            out.append({"ok": True, "body": plain(reply.body)})
    bus.disconnect()
    return out


async def listen(seconds: float) -> str:
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    got: asyncio.Future = asyncio.get_running_loop().create_future()

    def on_msg(msg):
        if msg.message_type == MessageType.SIGNAL and msg.member == "CallCaptured" and not got.done():
            got.set_result(msg.body[0])
    bus.add_message_handler(on_msg)
    rule = f"type='signal',sender='{B.BUS_NAME}',interface='{B.READ_INTERFACE}'"
    await bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                           interface="org.freedesktop.DBus", member="AddMatch", signature="s", body=[rule]))
    print("ready", flush=True)
    try:
        return "got " + await asyncio.wait_for(got, seconds)
    except asyncio.TimeoutError:
        return "none"


if __name__ == "__main__":
    if sys.argv[1] == "calls":
        print(json.dumps(asyncio.run(calls(json.loads(sys.argv[2])))))
    else:
        print(asyncio.run(listen(float(sys.argv[2]))), flush=True)
