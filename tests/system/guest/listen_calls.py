"""Runs INSIDE the container: wait for the CallCaptured signal of one call, as a bus client.

    python3 listen_calls.py MODEL SECONDS     prints "subscribed" once its match rule is in
                                               place, then the event JSON of the first
                                               CallCaptured from io.agtap.Agtap1 whose model
                                               is MODEL; exit 1 when none came in SECONDS

Only signals count here (it never calls GetRecentCalls): an event printed is one that was
sent live, after the subscription. dbus-next is the package's own dependency.
"""
import asyncio
import json
import sys

from dbus_next import BusType, Message, MessageType
from dbus_next.aio import MessageBus

NAME, PATH, IFACE = "io.agtap.Agtap1", "/io/agtap/Agtap1", "io.agtap.Agtap1"


async def main(model: str, seconds: float) -> int:
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    reply = await bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                                   interface="org.freedesktop.DBus", member="GetNameOwner", signature="s",
                                   body=[NAME]))
    owner = reply.body[0]
    got: asyncio.Future = asyncio.get_running_loop().create_future()

    def on_message(msg: Message) -> None:
        if (msg.message_type == MessageType.SIGNAL and msg.member == "CallCaptured" and msg.sender == owner
                and msg.interface == IFACE and msg.path == PATH and not got.done()):
            ev = json.loads(msg.body[0])
            if ev.get("model") == model:
                got.set_result(ev)

    bus.add_message_handler(on_message)
    await bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                           interface="org.freedesktop.DBus", member="AddMatch", signature="s",
                           body=[f"type='signal',sender='{NAME}',interface='{IFACE}',member='CallCaptured'"]))
    print("subscribed", flush=True)
    try:
        ev = await asyncio.wait_for(got, seconds)
    except asyncio.TimeoutError:
        return 1
    print(json.dumps(ev), flush=True)
    return 0


sys.exit(asyncio.run(main(sys.argv[1], float(sys.argv[2]))))
