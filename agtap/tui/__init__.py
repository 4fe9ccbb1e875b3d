"""agtap-tui: the live dashboard, an unprivileged D-Bus client of the agtap service.

agtap/busclient.py (shared with agtapctl) holds all D-Bus access; model.py and aggregate.py are plain Python
over event dicts; fmt.py turns values into cells; widgets*.py are urwid; app.py
wires them to one asyncio loop.
"""
