"""Every use agtap makes of dbus-next's private internals, and nowhere else.

dbus-next has not had a release since 0.2.3 (2021); Debian 12 ships it as
python3-dbus-next 0.2.3-3 and Debian 13 as 0.2.3-4, the same code. agtap needs
three things its public API lacks:

- `dispatch(bus, msg)`: hand a method call to dbus-next's own dispatch
  (`BaseMessageBus._process_message`) once agtap's access check (run
  asynchronously, from a message handler, dbus_object.Gate) has allowed it.
- `tolerate_slow_bus(bus)`: dbus-next treats EAGAIN from a non-blocking send
  as fatal: `_MessageWriter.write_callback` finalizes the bus, and agtap's
  D-Bus interface would be dead for good while the process stays up (upstream
  altdesktop/python-dbus-next#153; the fix, PR #154, is unreleased). This is
  the same writer with EAGAIN meaning "wait until the socket is writable",
  which is what the fix does. The writer stays registered with the loop, so it
  is called again when the socket drains.
- `queued_messages(bus)`: how many messages wait in that writer.

TESTED_VERSIONS and PINNED_SOURCES say what these were checked against;
tests/unit/test_dbusnext_private.py fails, naming what changed, on any other
dbus-next (check this module against it, then update both).
"""

from __future__ import annotations

import array
import socket

TESTED_VERSIONS = ("0.2.3",)
# sha256 (first 16 hex digits) of the source of each private piece used here
PINNED_SOURCES = {
    "dbus_next.message_bus.BaseMessageBus._process_message": "a9365dcc8aba59f0",
    "dbus_next.aio.message_bus._MessageWriter.__init__": "10256a4b71bccb22",
    "dbus_next.aio.message_bus._MessageWriter.write_callback": "a2329e095be25d00",
    "dbus_next.aio.message_bus._MessageWriter.buffer_message": "d294019c4870a60f",
    "dbus_next.aio.message_bus._future_set_result": "17d9895cccc40574",
    "dbus_next.aio.message_bus._future_set_exception": "f0e8215ca977561d",
}


def dispatch(bus, msg) -> None:
    """dbus-next's own handling of an incoming message (method dispatch, replies)."""
    bus._process_message(msg)

# Signals waiting in the writer past which CallCaptured is dropped (and counted):
# a bus that does not drain must not grow the daemon's memory.
MAX_QUEUED_MESSAGES = 5000


def tolerate_slow_bus(bus) -> None:
    w = getattr(bus, "_writer", None)
    if w is None or getattr(w, "_agtap_patched", False):
        return
    from dbus_next.aio.message_bus import _future_set_exception, _future_set_result

    def write_callback():
        try:
            while True:
                if w.buf is None:
                    if w.messages.qsize() == 0:
                        w.loop.remove_writer(w.fd)
                        return
                    buf, unix_fds, fut = w.messages.get_nowait()
                    w.unix_fds = unix_fds
                    w.buf = memoryview(buf)
                    w.offset = 0
                    w.fut = fut
                try:
                    if w.unix_fds and w.negotiate_unix_fd:
                        ancdata = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", w.unix_fds))]
                        w.offset += w.sock.sendmsg([w.buf[w.offset:]], ancdata)
                        w.unix_fds = None
                    else:
                        w.offset += w.sock.send(w.buf[w.offset:])
                except BlockingIOError:
                    return   # the socket is full: the loop calls us again once it is writable
                if w.offset >= len(w.buf):
                    w.buf = None
                    _future_set_result(w.fut, None)
                else:
                    return
        except Exception as e:
            _future_set_exception(w.fut, e)
            w.bus._finalize(e)

    w.write_callback = write_callback
    w._agtap_patched = True


def queued_messages(bus) -> int:
    w = getattr(bus, "_writer", None)
    try:
        return w.messages.qsize() if w is not None else 0
    except Exception:
        return 0
