"""redact: secrets leave headers, query strings and raw text; prompts are otherwise untouched."""

import json

from agtap.redact import (
    REDACTED,
    is_secret_param,
    redact_headers,
    redact_target,
    redact_text,
    scrub_bytes,
    scrub_text,
)

ANTHROPIC_KEY = "sk-ant-api03-" + "A1b2C3d4" * 11
OPENAI_KEY = "sk-proj-" + "Zz09_-Yy" * 7
OPENAI_LEGACY = "sk-" + "k" * 20 + "9" * 28
GOOGLE_KEY = "AIzaSy" + "D1e2F3g4H5" * 3 + "abc"


def test_every_secret_header_is_redacted_case_insensitively():
    headers = [
        ("Authorization", "Bearer tok1"),
        ("PROXY-AUTHORIZATION", "Basic abc"),
        ("x-api-key", "k1"),
        ("X-Goog-Api-Key", "k2"),
        ("api-key", "k3"),
        ("Cookie", "session=1"),
        ("set-cookie", "id=2; HttpOnly"),
        ("X-Amz-Security-Token", "FwoGZXIvYXdzEFAKE"),
        ("Content-Type", "application/json"),
        ("anthropic-version", "2023-06-01"),
    ]
    out = redact_headers(headers)
    assert [n for n, _ in out] == [n for n, _ in headers]
    assert [v for _, v in out[:8]] == [REDACTED] * 8
    assert out[8:] == headers[8:]
    assert headers[0] == ("Authorization", "Bearer tok1")  # input not modified


def test_target_key_param_is_redacted_and_the_rest_kept():
    t = f"POST /v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&key={GOOGLE_KEY}"
    assert redact_target(t) == f"POST /v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&key={REDACTED}"
    assert redact_target(f"/v1/x?key={GOOGLE_KEY}") == f"/v1/x?key={REDACTED}"


def test_target_other_secret_named_params():
    t = "/p?api_key=a1&access_token=b2&client_secret=c3&apiKey=d4&X-Amz-Signature=e5&sig=f6&page=2&model=m"
    assert redact_target(t) == (
        f"/p?api_key={REDACTED}&access_token={REDACTED}&client_secret={REDACTED}"
        f"&apiKey={REDACTED}&X-Amz-Signature={REDACTED}&sig={REDACTED}&page=2&model=m"
    )


def test_target_without_query_or_with_empty_key_is_unchanged():
    assert redact_target("POST /v1/messages") == "POST /v1/messages"
    assert redact_target("/x?key=&a=1") == "/x?key=&a=1"
    # "key" in the path is not a query parameter
    assert redact_target("/v1/key=notaparam/x") == "/v1/key=notaparam/x"


def test_secret_param_names():
    assert all(map(is_secret_param, ["key", "KEY", "api_key", "apikey", "x%2Dapi%2Dkey", "id_token", "sig"]))
    assert not any(map(is_secret_param, ["alt", "model", "keys", "signal", "page"]))


def test_scrub_finds_each_credential_shape():
    text = f"a {ANTHROPIC_KEY} b {OPENAI_KEY} c {OPENAI_LEGACY} d {GOOGLE_KEY} e"
    assert scrub_text(text) == f"a {REDACTED} b {REDACTED} c {REDACTED} d {REDACTED} e"


def test_scrub_bearer_keeps_the_word():
    assert scrub_text("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.abc.def") == f"Authorization: Bearer {REDACTED}"
    assert scrub_text("bearer ya29.a0AfH6SMB1234567890xyz") == f"bearer {REDACTED}"


def test_scrub_leaves_ordinary_prose_alone():
    prose = (
        "This risk-free task-list plan uses sk-learn; ask-me-anything. The bearer instrument "
        "is a Bearer bond. AIza is a prefix. sk-short. Ask-12345678901234567890 is fine."
    )
    assert scrub_text(prose) == prose


def test_scrub_keeps_json_valid_and_other_content_identical():
    body = {
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": f"my key is {ANTHROPIC_KEY}, héllo ✓"}],
        "max_tokens": 10,
    }
    raw = json.dumps(body, ensure_ascii=False).encode()
    out = json.loads(scrub_bytes(raw))
    assert out["messages"][0]["content"] == f"my key is {REDACTED}, héllo ✓"
    out["messages"][0]["content"] = body["messages"][0]["content"]
    assert out == body


def test_scrub_bytes_on_invalid_utf8():
    data = b"\xff\xfe" + GOOGLE_KEY.encode() + b"\x80"
    assert scrub_bytes(data) == b"\xff\xfe" + REDACTED.encode() + b"\x80"


def test_scrub_is_idempotent():
    once = scrub_text(f"Bearer {OPENAI_KEY} {GOOGLE_KEY}")
    assert scrub_text(once) == once == f"Bearer {REDACTED} {REDACTED}"


def test_redact_text_on_a_raw_http_request_head():
    head = (
        f"POST /v1beta/models/g:generateContent?key=plainkey123 HTTP/1.1\r\n"
        f"Host: generativelanguage.googleapis.com\r\n"
        f"x-goog-api-key: plainkey456\r\n"
        f"Authorization: Basic dXNlcjpwYXNz\r\n"
        f"  cookie : a=b; c=d\r\n"
        f"User-Agent: test\r\n\r\n"
    )
    out = redact_text(head)
    for secret in ("plainkey123", "plainkey456", "dXNlcjpwYXNz", "a=b"):
        assert secret not in out
    assert out == (
        f"POST /v1beta/models/g:generateContent?key={REDACTED} HTTP/1.1\r\n"
        f"Host: generativelanguage.googleapis.com\r\n"
        f"x-goog-api-key: {REDACTED}\r\n"
        f"Authorization: {REDACTED}\r\n"
        f"  cookie : {REDACTED}\r\n"
        f"User-Agent: test\r\n\r\n"
    )
