"""The one place secrets are removed before anything is written to disk.

Three kinds of secret are removed:

1. Header values, by header name (case-insensitive): SECRET_HEADERS.
2. Query parameter values, by parameter name: `key` (Gemini's API key) and,
   to be safe with other APIs, any name that is or ends in `key`, `token`,
   `secret`, `password` or `signature`/`sig` (`api_key`, `access_token`,
   `client_secret`, `X-Amz-Signature` ...). Over-redacting a query value
   costs nothing; the names stay, so the call is still readable.
3. Credential-shaped strings anywhere in a body: `sk-ant-...` (Anthropic),
   `sk-...`/`sk-proj-...` (OpenAI), `AIza...` (Google), and the token after
   `Bearer `. Bodies are the user's prompts, so nothing else in them is
   rewritten; the patterns are anchored so that words like "risk-free" or
   "task-list" are left alone. Replacements contain no quote or backslash, so
   JSON stays valid after scrubbing.

Every function works on `str`; `scrub_bytes` is the byte form for bodies.
`StreamMasker` applies the same list to raw captured bytes that arrive in
pieces (`agtap record`): it overwrites each secret byte for byte, so lengths,
offsets and Content-Length stay true and a recording replays as it was captured.

This module imports nothing from agtap: capture (recordings) and sinks (bodies)
both use it, and capture is the top layer.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

REDACTED = "[REDACTED]"

SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "x-goog-api-key",
        "api-key",
        "x-amz-security-token",   # AWS temporary credentials' session token (SigV4 is in authorization)
        "cookie",
        "set-cookie",
    }
)

def is_secret_param(name: str) -> bool:
    """True for `key`, `api_key`, `apiKey`, `access_token`, `client_secret`, `sig` ... (after %-decoding)."""
    name = unquote(name)
    low = name.lower()
    if low in ("sig", "signature"):
        return True
    return low.endswith(("key", "token", "secret", "password", "signature"))


def redact_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A copy of `headers` with the value of every secret header replaced by [REDACTED]."""
    return [(name, REDACTED if name.strip().lower() in SECRET_HEADERS else value) for name, value in headers]


# name=value inside a query string; value stops at &, ;, #, whitespace or a quote.
_QUERY_PARAM = re.compile(r"""([?&;])([^=&;#\s"'<>]+)=([^&;#\s"'<>]*)""")


def _redact_param(m: re.Match[str]) -> str:
    sep, name, value = m.group(1), m.group(2), m.group(3)
    if value and is_secret_param(name):
        return f"{sep}{name}={REDACTED}"
    return m.group(0)


def redact_target(target: str) -> str:
    """Request target ("POST /v1beta/...:generateContent?key=AIza..&alt=sse") with secret params' values removed."""
    q = target.find("?")
    if q < 0:
        return target
    return target[:q] + _QUERY_PARAM.sub(_redact_param, target[q:])


# Credential patterns. The look-behind keeps "risk-free", "task-12345..." intact.
_TOKEN_PATTERNS = (
    r"(?<![A-Za-z0-9_\-])sk-ant-[A-Za-z0-9_\-]{8,}",
    r"(?<![A-Za-z0-9_\-])sk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_\-]{20,}",
    r"(?<![A-Za-z0-9_\-])AIza[0-9A-Za-z_\-]{30,}",
)
# A bearer token: 16+ token characters with at least one digit, so prose ("the bearer
# instrument") is left alone while API keys, JWTs and OAuth tokens are caught.
_BEARER = r"(?i:\b(bearer))[ \t]+(?=[A-Za-z0-9._~+/\-]*[0-9])[A-Za-z0-9._~+/\-]{16,}=*"

_TOKENS_STR = re.compile("|".join(_TOKEN_PATTERNS))
_BEARER_STR = re.compile(_BEARER)
_TOKENS_BYTES = re.compile("|".join(_TOKEN_PATTERNS).encode())
_BEARER_BYTES = re.compile(_BEARER.encode())
_REDACTED_B = REDACTED.encode()


# The patterns' look-behinds make a regex scan cost ~1 µs per character; bodies are
# mostly prompts and model output without any credential in them. A substring test
# (C speed) decides whether each scan is needed at all: it was most of the daemon's
# CPU per streamed call.
def scrub_text(text: str) -> str:
    """Remove credential-shaped strings (sk-..., sk-ant-..., AIza..., Bearer tokens); nothing else changes."""
    if "sk-" in text or "AIza" in text:
        text = _TOKENS_STR.sub(REDACTED, text)
    if "bearer" in text.lower():
        text = _BEARER_STR.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return text


def scrub_bytes(data: bytes) -> bytes:
    """`scrub_text` for raw bytes (bodies that may not be UTF-8)."""
    if b"sk-" in data or b"AIza" in data:
        data = _TOKENS_BYTES.sub(_REDACTED_B, data)
    if b"bearer" in data.lower():
        data = _BEARER_BYTES.sub(lambda m: m.group(1) + b" " + _REDACTED_B, data)
    return data


# A header line in raw HTTP text: "X-Api-Key: value" up to the end of the line.
_HEADER_LINE = re.compile(
    r"(?im)^([ \t]*(?:" + "|".join(re.escape(h) for h in sorted(SECRET_HEADERS)) + r")[ \t]*:)[^\r\n]*"
)


def redact_text(text: str) -> str:
    """Raw text that may hold HTTP (a request head, an error message, a log line): remove every secret.

    Secret header lines keep their name, query parameters keep their name,
    and credential-shaped strings are scrubbed wherever they are.
    """
    text = _HEADER_LINE.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _QUERY_PARAM.sub(_redact_param, text)
    return scrub_text(text)


# --- raw captured bytes, in pieces: agtap record ---------------------------------------------
MASK = ord("*")
CARRY_MAX = 8192    # bytes of the current line kept from one piece to the next

_HEADER_LINE_B = re.compile(
    rb"(?im)^[ \t]*(?:" + b"|".join(re.escape(h.encode()) for h in sorted(SECRET_HEADERS)) + rb")[ \t]*:[ \t]*([^\r\n]*)"
)
_QUERY_PARAM_B = re.compile(_QUERY_PARAM.pattern.encode())
# A credential cut by the end of a piece: its prefix is certain, the rest comes in the next piece.
_TOKEN_TAIL_B = re.compile(rb"(?<![A-Za-z0-9_\-])(?:sk-|AIza)[A-Za-z0-9_\-]*\Z")
_BEARER_TOKEN_B = re.compile(rb"(?i:\bbearer)[ \t]+((?=[A-Za-z0-9._~+/\-]*[0-9])[A-Za-z0-9._~+/\-]{16,}=*)")
_BEARER_TAIL_B = re.compile(rb"(?i:\bbearer)[ \t]+([A-Za-z0-9._~+/\-]*=*)\Z")


def secret_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of every secret byte run in raw bytes: secret header values, secret query
    parameter values, credential-shaped strings and Bearer tokens (also those cut by the end)."""
    spans = [m.span(1) for m in _HEADER_LINE_B.finditer(data)]
    spans += [m.span(3) for m in _QUERY_PARAM_B.finditer(data)
              if m.group(3) and is_secret_param(m.group(2).decode("latin-1"))]
    if b"sk-" in data or b"AIza" in data:
        spans += [m.span() for m in _TOKENS_BYTES.finditer(data)]
        spans += [m.span() for m in _TOKEN_TAIL_B.finditer(data)]
    if b"bearer" in data.lower():
        spans += [m.span(1) for m in _BEARER_TOKEN_B.finditer(data)]
        spans += [m.span(1) for m in _BEARER_TAIL_B.finditer(data)]
    return [(a, b) for a, b in spans if b > a]


class StreamMasker:
    """Overwrites secrets with '*' in byte streams that arrive in pieces, byte for byte.

    One stream per key (a connection and direction). A secret may be cut by the
    end of a piece: the current line so far (up to CARRY_MAX bytes, unmasked) is
    kept and scanned again with the next piece, whose share of a match is masked,
    and a credential whose certain prefix ends a piece is masked up to that end.
    """

    def __init__(self) -> None:
        self._carry: dict[object, bytes] = {}

    def mask(self, key: object, data: bytes) -> bytes:
        carry = self._carry.get(key, b"")
        buf = carry + data
        off = len(carry)
        out = None
        for a, b in secret_spans(buf):
            a = max(a, off)
            if a < b:
                if out is None:
                    out = bytearray(data)
                out[a - off:b - off] = bytes([MASK]) * (b - a)
        nl = buf.rfind(b"\n")
        self._carry[key] = buf[nl + 1:][-CARRY_MAX:]
        return data if out is None else bytes(out)

    def forget(self, key: object) -> None:
        self._carry.pop(key, None)

    def forget_matching(self, pred) -> None:
        for k in [k for k in self._carry if pred(k)]:
            del self._carry[k]
