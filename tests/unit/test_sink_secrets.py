"""No secret reaches disk: every header style, query keys and key-shaped strings in bodies.

All sinks write into one tmp dir; then every byte of every file there is
searched for every fake secret (and base64 bodies are decoded and searched too).
"""

import base64
import json
import os
import uuid

from agtap.call import KIND_LLM, Call, CallBodies
from agtap.sinks.bodies import BodiesSink
from agtap.sinks.journal import JournalSink
from agtap.sinks.jsonl import JsonlSink

# Distinct fake secrets, one per place a credential travels.
SECRETS = {
    "x-api-key": "fake-xapikey-0001-SECRET",
    "authorization": "fake-bearer-0002-SECRET",
    "x-goog-api-key": "fake-googkey-0003-SECRET",
    "api-key": "fake-azurekey-0004-SECRET",
    "query key": "fake-querykey-0005-SECRET",
    "cookie": "fake-cookie-0006-SECRET",
    "set-cookie": "fake-setcookie-0007-SECRET",
    "proxy-authorization": "fake-proxyauth-0008-SECRET",
    "query api_key": "fake-queryapikey-0009-SECRET",
    "aws sigv4": "fake-sigv4signature-0011-SECRET",
    "aws session token": "fake-amzsecuritytoken-0012-SECRET",
    "anthropic key in prompt": "sk-ant-api03-" + "Q7w8E9r0" * 10,
    "openai key in response": "sk-proj-" + "Zx12Cv34Bn56" * 4,
    "google key in SSE": "AIzaSy" + "Pq1Wr2Et3Y" * 3 + "u4I",
    "bearer in events": "ya29.fakeOAuth0010SECRETtoken",
    "key in binary body": "sk-ant-api03-" + "B1n4ry00" * 8,
}


def make_call() -> Call:
    s = SECRETS
    bodies = CallBodies(
        request_headers=[
            ("Host", "generativelanguage.googleapis.com"),
            ("X-Api-Key", s["x-api-key"]),
            ("authorization", f"Bearer {s['authorization']}"),
            ("X-GOOG-API-KEY", s["x-goog-api-key"]),
            ("api-key", s["api-key"]),
            ("Cookie", f"session={s['cookie']}; theme=dark"),
            ("Proxy-Authorization", f"Basic {s['proxy-authorization']}"),
            ("Authorization", "AWS4-HMAC-SHA256 Credential=ASIAFAKE/20261130/us-east-1/bedrock/aws4_request, "
                              f"SignedHeaders=host;x-amz-date;x-amz-security-token, Signature={s['aws sigv4']}"),
            ("X-Amz-Security-Token", s["aws session token"]),
        ],
        request_target=f"POST /v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&key={s['query key']}"
        f"&api_key={s['query api_key']}",
        request_body=json.dumps(
            {"contents": [{"parts": [{"text": f"please check my key {s['anthropic key in prompt']} thanks"}]}]}
        ).encode(),
        response_status=200,
        response_headers=[("Content-Type", "text/event-stream"), ("Set-Cookie", f"id={s['set-cookie']}; Secure")],
        response_body=(
            f'data: {{"candidates":[{{"content":{{"parts":[{{"text":"your key {s["google key in SSE"]} and '
            f'{s["openai key in response"]}"}}]}}}}]}}\r\n\r\n'
        ).encode(),
        response_events=[{"jsonrpc": "2.0", "id": 7, "result": {"auth": f"Bearer {s['bearer in events']}"}}],
    )
    return Call(
        ts="2026-11-26T23:37:25.000000Z", id="resp-1", pid=4242, proc="python3", provider="google",
        server_address="generativelanguage.googleapis.com", kind=KIND_LLM, model="gemini-2.5-flash",
        input_tokens=10, output_tokens=20, latency_ms=50.0, stop_reason="STOP", bodies=bodies,
    )


def all_bytes_under(root) -> list[tuple[str, bytes]]:
    out = []
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            out.append((p, open(p, "rb").read()))
    return out


def test_no_secret_in_any_file_the_sinks_wrote(tmp_path):
    journal_file = tmp_path / "journal-export.txt"

    def send_to_file(message, **fields):  # stands in for journald: keeps every byte sent
        with open(journal_file, "a") as f:
            f.write(f"MESSAGE={message}\n" + "".join(f"{k}={v}\n" for k, v in fields.items()))

    bodies = BodiesSink(str(tmp_path / "bodies"), 10, 24)
    sinks = [bodies, JsonlSink(str(tmp_path / "log" / "events.jsonl"), 1, 3), JournalSink(True, send=send_to_file)]
    calls = [make_call() for _ in range(3)]
    binary = make_call()
    binary.bodies.request_body = b"\xff\xfe\x00" + SECRETS["key in binary body"].encode() + b"\x80"
    calls.append(binary)
    for c in calls:
        for sink in sinks:
            sink.write(c)
            assert sink.stats()["write_errors"] == 0, sink.name
    for sink in sinks:
        sink.close()

    files = all_bytes_under(tmp_path)
    assert len(files) == 4 + 1 + 1  # four body files, the event log, the journal stand-in
    decoded = []
    for c in calls:
        doc = json.loads(open(c.body_path, "rb").read())
        for part in (doc["request"], doc["response"]):
            if part["body_encoding"] == "base64":
                decoded.append((c.body_path + " (base64 body)", base64.b64decode(part["body"])))
    assert len(decoded) == 1
    for path, data in files + decoded:
        for where, secret in SECRETS.items():
            assert secret.encode() not in data, f"{where} secret found in {path}"
    # ... and the redaction left the useful parts readable
    doc = json.loads(open(calls[0].body_path, "rb").read())
    assert doc["request"]["target"].endswith("?alt=sse&key=[REDACTED]&api_key=[REDACTED]")
    assert doc["request"]["body"]["contents"][0]["parts"][0]["text"] == "please check my key [REDACTED] thanks"
    assert ["Host", "generativelanguage.googleapis.com"] in doc["request"]["headers"]
    assert doc["response"]["events"][0]["result"]["auth"] == "Bearer [REDACTED]"
