"""Every D-Bus and polkit name agtap uses, and its group, defined once (as firewalld's config/dbus.py)."""

BUS_NAME = "io.agtap.Agtap1"
OBJECT_PATH = "/io/agtap/Agtap1"
READ_INTERFACE = "io.agtap.Agtap1"            # properties, GetStats, GetRecentCalls, GetCallBodies, CallCaptured
CONTROL_INTERFACE = "io.agtap.Agtap1.Control"  # Start, Stop, SetFilter, ClearFilter, Clean
POLKIT_ACTION_MANAGE = "io.agtap.manage"
GROUP = "agtap"                                # may read: the bus policy, the files (0640 root:agtap)
# What to tell a user who is refused the read side (agtapctl, agtap-tui).
JOIN_GROUP_FIX = f"add yourself to group {GROUP}: sudo usermod -aG {GROUP} $USER, then log in again"

ERROR_PREFIX = "io.agtap.Error"
ERROR_ACCESS_DENIED = ERROR_PREFIX + ".AccessDenied"
ERROR_INVALID_ARGUMENT = ERROR_PREFIX + ".InvalidArgument"
ERROR_FAILED = ERROR_PREFIX + ".Failed"
ERROR_NOT_FOUND = ERROR_PREFIX + ".NotFound"
