"""Terminal safety: make attacker-controlled strings harmless before they are printed.

Model names, tool names, process names and stop reasons come from traced
processes and from API responses, so any of them may carry escape sequences
that retitle a terminal (OSC), clear it (CSI 2J), move the cursor, or hide
text behind bidi overrides. `printable` removes whole sequences first (so no
parameter bytes are left behind as junk), then every remaining control
character. agtapctl and the TUI print only what went through here.
"""

from __future__ import annotations

import re

# Whole escape sequences, 7-bit (ESC-introduced) and 8-bit (C1-introduced) forms.
_SEQUENCES = re.compile(
    r"""
      (?:\x1b\[|\x9b)[\x20-\x3f]*[\x40-\x7e]?          # CSI: params, intermediates, final byte
    | (?:\x1b[\]PX^_]|[\x9d\x90\x98\x9e\x9f])           # OSC, DCS, SOS, PM, APC ...
      [^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)              # ... up to BEL or ST
    | \x1b[\x20-\x2f]*[\x30-\x7e]                       # other ESC sequences (ESC c, ESC ( B, ESC 7)
    """,
    re.VERBOSE,
)

# Everything that is not text: C0 (tab and newline handled by the caller), DEL, C1,
# bidi embeddings/overrides/isolates, and line/paragraph separators.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
_LINE_BREAKS = re.compile(r"[\t\n]+")

ELLIPSIS = "…"


def printable(s: object, max_len: int | None = None) -> str:
    """`s` with escape sequences and control characters removed; tabs and newlines kept.

    With `max_len`, the result is at most `max_len` characters, ending in "…"
    when it was cut.
    """
    if s is None:
        return ""
    if not isinstance(s, str):
        s = s.decode("utf-8", "replace") if isinstance(s, (bytes, bytearray)) else str(s)
    s = _SEQUENCES.sub("", s)
    s = _CONTROLS.sub("", s)
    # Lone surrogates (from surrogateescape-decoded bytes) cannot be encoded to a terminal.
    s = s.encode("utf-8", "replace").decode("utf-8")
    if max_len is not None and len(s) > max_len:
        s = s[: max(max_len - 1, 0)] + ELLIPSIS if max_len > 0 else ""
    return s


def safe_field(s: object, max_len: int = 200) -> str:
    """One bounded line for a table cell or a log field: like `printable`, tabs/newlines become a space."""
    return printable(_LINE_BREAKS.sub(" ", printable(s)), max_len)
