"""One structured journal entry per call, so `journalctl -u agtap` and `journalctl AGTAP_MODEL=...` work.

Model, tool names, stop reason and process name come from traced processes
and API responses: every string field goes through textsafe.safe_field (no
NUL, no control characters, no newlines, at most FIELD_MAX characters) so
an entry cannot be split, forged or used to attack a terminal reading it.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from agtap.call import OUTCOME_OK, Call
from agtap.sinks.fsutil import FailureLog
from agtap.textsafe import safe_field

log = logging.getLogger(__name__)

FIELD_MAX = 200
PRIORITY_INFO = 6
PRIORITY_WARNING = 4


def _num(v: float | int | None, fmt: str = "{}") -> str | None:
    return None if v is None else fmt.format(v)


def journal_message(call: Call) -> str:
    """`anthropic claude-sonnet-4-5 python3[1234] my-agent.service in=1200 out=340 1.82s end_turn tools=get_weather`."""
    parts = [safe_field(call.provider, 40), safe_field(call.model or "-", FIELD_MAX)]
    parts.append(f"{safe_field(call.proc, 64)}[{int(call.pid)}]")
    if call.unit:
        parts.append(safe_field(call.unit, FIELD_MAX))
    if call.input_tokens is not None:
        parts.append(f"in={int(call.input_tokens)}")
    if call.output_tokens is not None:
        parts.append(f"out={int(call.output_tokens)}")
    if call.latency_ms is not None:
        parts.append(f"{call.latency_ms / 1000:.2f}s")
    if call.stop_reason:
        parts.append(safe_field(call.stop_reason, FIELD_MAX))
    if call.http_status is not None and call.http_status >= 400:
        parts.append(f"http={int(call.http_status)}")
    if call.incomplete:
        parts.append(f"incomplete={safe_field(call.incomplete_reason or 'yes', FIELD_MAX)}")
    if call.tools:
        parts.append("tools=" + safe_field(",".join(safe_field(t, FIELD_MAX) for t in call.tools), FIELD_MAX))
    return " ".join(parts)


def journal_fields(call: Call) -> dict[str, str]:
    """MESSAGE plus AGTAP_* fields; fields with no value are left out (journal fields cannot be null)."""
    fields: dict[str, str | None] = {
        "MESSAGE": journal_message(call),
        "PRIORITY": str(PRIORITY_INFO if call.outcome() == OUTCOME_OK else PRIORITY_WARNING),
        "SYSLOG_IDENTIFIER": "agtap",
        "AGTAP_EVENT_ID": safe_field(call.event_id, 64),
        "AGTAP_RESPONSE_ID": safe_field(call.id, FIELD_MAX) if call.id else None,
        "AGTAP_PROVIDER": safe_field(call.provider, 40),
        "AGTAP_PLATFORM": safe_field(call.platform, 40) if call.platform else None,
        "AGTAP_KIND": safe_field(call.kind, 40),
        "AGTAP_MODEL": safe_field(call.model, FIELD_MAX) if call.model else None,
        "AGTAP_PID": str(int(call.pid)),
        "AGTAP_PROC": safe_field(call.proc, FIELD_MAX),
        "AGTAP_UNIT": safe_field(call.unit, FIELD_MAX) if call.unit else None,
        "AGTAP_SERVER_ADDRESS": safe_field(call.server_address, FIELD_MAX) if call.server_address else None,
        "AGTAP_INPUT_TOKENS": _num(call.input_tokens),
        "AGTAP_OUTPUT_TOKENS": _num(call.output_tokens),
        "AGTAP_LATENCY_MS": _num(call.latency_ms, "{:.1f}"),
        "AGTAP_TTFT_MS": _num(call.ttft_ms, "{:.1f}"),
        "AGTAP_STOP_REASON": safe_field(call.stop_reason, FIELD_MAX) if call.stop_reason else None,
        "AGTAP_TOOLS": safe_field(",".join(safe_field(t, FIELD_MAX) for t in call.tools), 1000) if call.tools else None,
        "AGTAP_COST_USD": _num(call.cost_usd, "{:.6f}"),
        "AGTAP_HTTP_STATUS": _num(call.http_status),
        "AGTAP_HTTP_VERSION": safe_field(call.http_version, 8) if call.http_version else None,
        "AGTAP_STREAMING": "1" if call.streaming else "0",
        "AGTAP_INCOMPLETE": safe_field(call.incomplete_reason or "yes", FIELD_MAX) if call.incomplete else None,
        "AGTAP_BODY_PATH": safe_field(call.body_path, 500) if call.body_path else None,
    }
    return {k: v for k, v in fields.items() if v is not None}


class JournalSink:
    name = "journal"

    def __init__(self, enabled: bool = True, *, send: Callable[..., Any] | None = None):
        """`send` defaults to systemd.journal.send; without python3-systemd the sink disables itself."""
        self.enabled = enabled
        self._send = send
        self._entries = 0
        self._errors = FailureLog(log, "sending to the journal")
        self.unavailable: str | None = None
        if enabled and send is None:
            try:
                from systemd import journal
            except ImportError as e:
                self.unavailable = f"python3-systemd missing: {e}"
                log.warning("journal sink off: %s", self.unavailable)
            else:
                self._send = journal.send

    def write(self, call: Call) -> None:
        if not self.enabled or self._send is None:
            return
        try:
            fields = journal_fields(call)
            message = fields.pop("MESSAGE")
            self._send(message, **fields)
            self._entries += 1
        except Exception as e:  # no journald socket, EAGAIN, a bad value: counted, never raised
            self._errors.failed(e)

    def close(self) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled and self._send is not None,
            "entries": self._entries,
            "write_errors": self._errors.count,
            "unavailable": self.unavailable,
        }
