"""Sinks: where finished calls go. Each takes a Call and writes it somewhere.

Order matters once: the bodies sink runs first, since it sets `call.body_path`
that the others record. A sink never raises out of `write`: failures are
counted in `stats()` and logged at most once a minute.
"""

from __future__ import annotations

from typing import Any, Protocol

from agtap.call import Call


class Sink(Protocol):
    name: str

    def write(self, call: Call) -> None: ...

    def close(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...
