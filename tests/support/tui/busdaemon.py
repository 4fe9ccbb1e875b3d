"""A private session-type dbus-daemon any uid may connect to: the TUI tests' bus.

The one implementation is tests/support/dbus/bus.py's PrivateBus.
"""

from __future__ import annotations

from tests.support.dbus.bus import PrivateBus


def BusDaemon() -> PrivateBus:
    """`with BusDaemon() as bus: bus.address`."""
    return PrivateBus(session=True, any_user=True)
