"""Per-model and per-process aggregates over the kept calls, and calls/s sparklines."""

from __future__ import annotations

from dataclasses import dataclass, field

from .model import event_epoch, is_error

BARS = "▁▂▃▄▅▆▇█"


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of the values; None when empty."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, -(-len(s) * p // 100) - 1))
    return s[int(k)]


@dataclass
class Group:
    key: str
    calls: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    priced: bool = False
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    def p(self, which: str, pct: float) -> float | None:
        return percentile(self.latencies if which == "latency" else self.ttfts, pct)


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def group_by(calls, key: str) -> list[Group]:
    """Groups by 'model' or 'proc', most calls first."""
    groups: dict[str, Group] = {}
    for ev in calls:
        k = ev.get(key)
        k = str(k) if k not in (None, "") else "?"
        g = groups.get(k)
        if g is None:
            g = groups[k] = Group(k)
        g.calls += 1
        g.errors += is_error(ev)
        g.input_tokens += int(_num(ev.get("input_tokens")) or 0)
        g.output_tokens += int(_num(ev.get("output_tokens")) or 0)
        c = _num(ev.get("cost_usd"))
        if c is not None:
            g.cost_usd += c
            g.priced = True
        lat = _num(ev.get("latency_ms"))
        if lat is not None:
            g.latencies.append(lat)
        t = _num(ev.get("ttft_ms"))
        if t is not None:
            g.ttfts.append(t)
        ts = event_epoch(ev)
        if ts is not None:
            g.times.append(ts)
    return sorted(groups.values(), key=lambda g: (-g.calls, g.key))


def rate_buckets(times, now: float, span: float, buckets: int) -> list[int]:
    """Counts of `times` in `buckets` equal slices of (now-span, now], oldest first."""
    out = [0] * buckets
    if buckets <= 0 or span <= 0:
        return out
    width = span / buckets
    start = now - span
    for t in times:
        if start < t <= now:
            i = min(int((t - start) / width), buckets - 1)
            out[i] += 1
    return out


def sparkline(counts: list[int], ascii_only: bool = False) -> str:
    if not counts:
        return ""
    top = max(counts)
    chars = " .:-=+*#" if ascii_only else BARS
    if top == 0:
        return (" " if ascii_only else BARS[0]) * len(counts)
    out = []
    for c in counts:
        if c == 0:
            out.append(" ")
        else:
            out.append(chars[min(len(chars) - 1, max(1 if ascii_only else 0, (c * len(chars) - 1) // top))])
    return "".join(out)
