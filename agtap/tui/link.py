"""The service link: keeps the dashboard's Model in step with the agtap service.

Connects, waits for io.agtap.Agtap1 to have an owner (NameOwnerChanged wakes
it; it also polls every `poll` seconds), loads properties, stats and recent
calls, then refreshes stats every `stats_interval`. Calls arrive by the
CallCaptured signal. Every failure becomes a Model state, never an exception,
except AccessDenied before anything was ever read: that ends the dashboard.
"""

from __future__ import annotations

import asyncio
from typing import Callable

from agtap.busclient import AccessDenied, BusClient, BusUnavailable, ClientError, NotRunning
from agtap.busnames import JOIN_GROUP_FIX

from .model import CONNECTING, DENIED, MAX_ROWS, NO_BUS, NOT_RUNNING, RUNNING, Model

DENIED_MESSAGE = f"agtap-tui: access denied: {JOIN_GROUP_FIX}"


class Link:
    def __init__(self, client: BusClient, model: Model, on_denied: Callable[[], None] | None = None,
                 poll: float = 2.0, stats_interval: float = 1.0, history: int = MAX_ROWS):
        self.client = client
        self.model = model
        self.on_denied = on_denied
        self.poll = poll
        self.stats_interval = stats_interval
        self.history = history
        self.ever_read = False
        self.denied = False
        self._wake: asyncio.Event | None = None
        self._loading = False
        self._buffer: list[dict] = []
        client.on_call(self._on_call)
        client.on_service_change(self._on_service_change)
        client.on_disconnect(self._on_disconnect)

    # --- signals ---------------------------------------------------------------
    def _on_call(self, ev: dict) -> None:
        if self._loading:
            self._buffer.append(ev)
        else:
            self.model.add_live(ev)

    def _on_service_change(self, running: bool) -> None:
        if not running:
            self.model.set_state(NOT_RUNNING)
        self._poke()

    def _on_disconnect(self) -> None:
        self.model.set_state(NO_BUS, "connection closed")
        self._poke()

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake early on a bus event."""
        if self._wake is None:
            self._wake = asyncio.Event()
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except asyncio.TimeoutError:
            pass
        self._wake.clear()

    # --- steps -----------------------------------------------------------------
    async def load(self) -> None:
        """Properties, stats and recent calls, in that order; signals meanwhile are kept and added after."""
        self._loading = True
        try:
            props = await self.client.properties()
            stats = await self.client.get_stats()
            calls = await self.client.recent_calls(self.history)
            self.ever_read = True
            self.model.set_props(props)
            self.model.set_stats(stats)
            self.model.add_many(calls)
        finally:
            self._loading = False
            buf, self._buffer = self._buffer, []
            self.model.add_many(buf)
        self.model.set_state(RUNNING)

    async def refresh(self) -> None:
        self.model.set_props(await self.client.properties())
        self.model.set_stats(await self.client.get_stats())

    async def step(self) -> float:
        """One round of the state machine; returns how long to wait before the next."""
        m = self.model
        try:
            if not self.client.connected:
                await self.client.connect()
            if not await self.client.service_running():
                m.set_state(NOT_RUNNING)
                return self.poll
            if m.state != RUNNING:
                await self.load()
            else:
                await self.refresh()
            return self.stats_interval
        except AccessDenied as e:
            if not self.ever_read:
                self.denied = True
                m.set_state(DENIED, e.text)
                if self.on_denied:
                    self.on_denied()
                return self.poll
            m.notify(f"access denied: {e.text or e.name}", error=True)
            return self.poll
        except NotRunning:
            m.set_state(NOT_RUNNING)
            return self.poll
        except BusUnavailable as e:
            self.client.close()
            m.set_state(NO_BUS, e.text)
            return self.poll
        except ClientError as e:
            m.notify(f"service error: {e.name} {e.text}", error=True)
            if m.state != RUNNING:
                m.set_state(CONNECTING, e.text)
            return self.poll

    async def run(self) -> None:
        while not self.denied:
            try:
                wait = await self.step()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a bug here must not freeze the dashboard silently
                self.model.notify(f"agtap-tui: internal error: {type(e).__name__}: {e}", error=True)
                wait = self.poll
            if self.denied:
                return
            await self._sleep(wait)
