"""Runs INSIDE the container: a minimal TLS server answering like the Anthropic Messages API.

    python3 fake_anthropic.py PORT CERT KEY

POST /v1/messages -> a non-streaming Message echoing the request's model, with usage.
Small and standard-library only, so the guest needs nothing beyond python3.
"""
import http.server
import json
import ssl
import sys


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        try:
            model = json.loads(body).get("model", "claude-test")
        except ValueError:
            model = "claude-test"
        out = json.dumps({
            "id": "msg_systest", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": "Hello from the fake API."}],
            "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": 7},
        }).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.send_header("request-id", "req_systest")
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, fmt, *args):
        sys.stderr.write("fake_anthropic: " + fmt % args + "\n")


port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
