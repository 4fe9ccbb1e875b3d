"""Demotion (per-process probe scope, off by default): stop watching a process that,
after N ignored requests or M MiB of ignored TLS traffic, never made an LLM or MCP call.

A process is watched because of what it might do (a runtime at exec, a TLS client);
a `pip install` or a crawler written in Python then pays the data probes on every
SSL call of traffic agtap drops anyway. With `--demote-after-requests N` and/or
`--demote-after-mib M` (0 = off, the default for both) such a process is demoted: its
data probes are detached, the kernel marks it W_DEMOTED so the sentinel leaves it
alone, and it stays so until it execs (a new image) or a filter names it.

What it can lose, and why it is off by default: an LLM call a demoted process makes
later is not seen. Never demoted: a process named by a filter (while a filter is set,
nothing is), one that made an LLM or MCP call, one with a connection being captured
right now (an exchange in flight: scope.py asks the kernel's conns map).

Counted, per watched process: requests the kernel itself leaves uncopied (not POST) and
the payload bytes of its ignored TLS connections (bpf watch_cost), plus the POSTs the
pipeline marks uninteresting (Tracer.ignore_conn). This module holds the policy
without BCC; scope.py applies it.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass, field

from agtap.capture.records import S_CAPTURE, S_EGRESS_ONLY, S_H2, S_H2_LATE, W_DEMOTED

MIB = 1 << 20
CHECK_S = 1.0   # how often scope.py looks at the counts


@dataclass(slots=True)
class DemotePolicy:
    after_requests: int = 0       # ignored requests before a process is demoted (0: never by count)
    after_mib: float = 0.0        # MiB of ignored TLS traffic before it is (0: never by volume)
    interesting: set[int] = field(default_factory=set)    # pids that made an LLM or MCP call
    ignored: dict[int, int] = field(default_factory=dict)  # pid -> POSTs the pipeline ignored

    @property
    def enabled(self) -> bool:
        return self.after_requests > 0 or self.after_mib > 0

    def note_ignored(self, pid: int) -> None:
        """The pipeline found no provider for a request of this process (a POST the kernel copied)."""
        if self.enabled and pid not in self.interesting:
            self.ignored[pid] = self.ignored.get(pid, 0) + 1

    def note_call(self, pid: int) -> None:
        """An LLM or MCP call of this process: never demoted (until it exits)."""
        if self.enabled:
            self.interesting.add(pid)
            self.ignored.pop(pid, None)

    def forget(self, pid: int) -> None:
        """The process exited or execs: its history goes with its image."""
        self.interesting.discard(pid)
        self.ignored.pop(pid, None)

    def verdict(self, pid: int, kernel_requests: int, kernel_bytes: int) -> str:
        """Why this watched process is to be demoted ("" = not), from the kernel's counts
        (watch_cost) and the pipeline's."""
        if not self.enabled or pid in self.interesting:
            return ""
        requests = kernel_requests + self.ignored.get(pid, 0)
        if self.after_requests and requests >= self.after_requests:
            return f"{requests} ignored requests, {kernel_bytes / MIB:.1f} MiB ignored, no LLM or MCP call"
        if self.after_mib and kernel_bytes >= self.after_mib * MIB:
            return f"{kernel_bytes / MIB:.1f} MiB ignored in {requests} requests, no LLM or MCP call"
        return ""


class Demoting:
    """ProcessScope's demotion, run on its attach thread. Uses the scope's `demotion`, `demoted`,
    `_demoted`, `_next_check`, `_watched`, `policy`, `_bpf`, `log`, `_unwatch` and `_set_state`."""

    def _check_demotion(self) -> None:
        """About once a second: demote the watched processes the policy says have shown no interest."""
        now = time.monotonic()
        if not self.demotion.enabled or now < self._next_check:
            return
        self._next_check = now + CHECK_S
        if self.policy.filtered:
            return   # what is watched is what the filter names
        due = []
        for pid, w in self._watched.items():
            if w.reason == "filter":
                continue
            requests, nbytes = self._cost(pid)
            why = self.demotion.verdict(pid, requests, nbytes)
            if why:
                due.append((pid, why))
        if not due:
            return
        busy = self._capturing_pids()
        for pid, why in due:
            if pid not in busy:
                self._demote(pid, why)

    def _cost(self, pid: int) -> tuple[int, int]:
        """The kernel's counts for a watched process (watch_cost): requests and bytes it left uncopied."""
        try:
            c = self._bpf["watch_cost"][ctypes.c_uint32(pid)]
            return int(c.requests), int(c.bytes)
        except Exception:
            return 0, 0   # no entry (the map was full when it was watched): judged on the pipeline's count

    def _capturing_pids(self) -> set[int]:
        """Processes with a connection being copied right now (an exchange in flight): not demoted."""
        try:
            return {k.pid for k, v in self._bpf["conns"].items() if v.state in (S_CAPTURE, S_EGRESS_ONLY, S_H2, S_H2_LATE)}
        except Exception:
            return set(self._watched)   # cannot tell: demote nobody this time

    def _demote(self, pid: int, why: str) -> None:
        self._unwatch(pid, f"demoted: {why}", kernel_state=False)
        self._set_state(pid, W_DEMOTED)   # the sentinel leaves it alone (bpf/ssl.c); deleted at its exit
        self._demoted.add(pid)
        self.demoted += 1
        self.log.warning("demoted pid %d (%s): a later LLM call of it is not seen unless a filter names it "
                         "or it execs", pid, why)

    def _zero_cost(self, pid: int) -> None:
        try:
            cost = self._bpf["watch_cost"]
            cost[ctypes.c_uint32(pid)] = cost.Leaf(0, 0)
        except Exception:
            pass   # the map is full: this process is judged on the pipeline's count alone
