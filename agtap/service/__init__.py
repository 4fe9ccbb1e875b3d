"""service: the daemon around the pipeline.

    controller.py   plain class: tracer + pipeline + sinks, stats, recent events, filters
    daemon.py       run(config, mode): the asyncio loop, signals, sd_notify, watchdog
    dbus_object.py  io.agtap.Agtap1 on the bus, access checks (bus policy + code + polkit)
    configfile.py   /etc/agtap/agtap.toml: load, validate, merge with flags and environment

D-Bus is known to this package (the service side) and to the one client,
agtap/busclient.py, which agtapctl (agtap/ctl.py) and agtap-tui (agtap/tui) use;
nothing below the service imports dbus_next.
"""
