"""The service tests' parts: a private dbus-daemon and the test users (bus), the daemon and clients as processes (procs, run_daemon, client), the FakeTracer (fakes)."""
