"""What `agtap record` keeps of wire bytes: the secrets masked byte for byte.

Written by hand from the rule (header values by name, the test clients' API keys),
not taken from agtap/redact.py, so a test comparing a recording with it checks that code.
"""

from __future__ import annotations

from .clients import API_KEYS

# Header values `agtap record` masks (written here by hand, not taken from agtap/redact.py).
SECRET_HEADERS = (b"authorization", b"proxy-authorization", b"x-api-key", b"x-goog-api-key", b"api-key",
                  b"cookie", b"set-cookie")


def as_recorded(raw: bytes) -> bytes:
    """What a recording holds of these wire bytes: every secret header value and every test API
    key overwritten with '*' byte for byte (the lengths stay, so the recording replays)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    lines = []
    for line in head.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() in SECRET_HEADERS:
            v = value.lstrip(b" \t")
            line = name + colon + value[:len(value) - len(v)] + b"*" * len(v)
        lines.append(line)
    out = b"\r\n".join(lines) + sep + body
    for key in API_KEYS.values():
        out = out.replace(key.encode(), b"*" * len(key))
    assert len(out) == len(raw)
    return out
