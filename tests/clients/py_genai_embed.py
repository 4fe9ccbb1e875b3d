"""google-genai's embed_content against the fake API, one call per name in --calls.

Calls: gemini-embed (Gemini API: :batchEmbedContents, x-goog-api-key), vertex-embed (Vertex AI
express mode, a gemini-embedding model: :embedContent), gemini-embed-error. The CA comes from
$SSL_CERT_FILE (see py_gemini.py). Prints {"client": "python-genai-embed", "pid", "results"}.
"""

from __future__ import annotations

import os

from pyclient_common import parse_calls_args, run_calls

args = parse_calls_args()

from google import genai  # noqa: E402
from google.genai import errors, types  # noqa: E402

key = os.environ.get("AGTAP_TEST_API_KEY", "AIzaAgtapTestEmbed")


def client(vertex: bool) -> genai.Client:
    return genai.Client(api_key=key, vertexai=vertex, http_options=types.HttpOptions(
        base_url=args.base_url, api_version="v1beta1" if vertex else "v1beta",
        retry_options=types.HttpRetryOptions(attempts=1)))


gemini, vertex = client(False), client(True)


def one(name: str) -> dict:
    try:
        c = vertex if name.startswith("vertex") else gemini
        r = c.models.embed_content(model="gemini-embedding-001", contents=["hello", "world"] if name != "vertex-embed"
                                   else "hello")
        return {"call": name, "n": len(r.embeddings), "values": r.embeddings[0].values}
    except errors.APIError as e:
        return {"call": name, "error": {"status": e.code, "message": e.message}}


run_calls("python-genai-embed", args, one)
