// A Bun program calling the fake API with Bun's own fetch() (BoringSSL, statically linked).
// bun bun_fetch.js BASE_URL MODE    MODE: anthropic | anthropic-stream | openai | openai-stream
// bun bun_fetch.js wait SECONDS      no call: lives SECONDS (for the tracer to look at the binary)
// bun bun_fetch.js BASE_URL MODE linger SECONDS   the same call, then lives SECONDS more (its
//                                    connection ends while the process is still running)
// The test CA comes from $AGTAP_TEST_CA (passed as fetch's `tls.ca`, which every Bun release
// here understands) and the key from $AGTAP_TEST_API_KEY. Prints one JSON line with what came back.
const [base, mode, after, seconds] = process.argv.slice(2);
if (base === 'wait') {
  await Bun.sleep(Number(mode) * 1000);
  process.exit(0);
}
const ca = await Bun.file(process.env.AGTAP_TEST_CA).text();
const key = process.env.AGTAP_TEST_API_KEY;
const stream = mode.endsWith('-stream');
const anthropic = mode.startsWith('anthropic');
const url = anthropic ? `${base}/v1/messages` : `${base}/v1/chat/completions`;
const model = anthropic ? 'claude-bun-test' : 'gpt-bun-test';
const body = anthropic
  ? { model, max_tokens: 64, stream, messages: [{ role: 'user', content: 'Say hello from bun.' }] }
  : { model, stream, ...(stream ? { stream_options: { include_usage: true } } : {}),
      messages: [{ role: 'user', content: 'Say hello from bun.' }] };
const headers = anthropic
  ? { 'content-type': 'application/json', 'x-api-key': key, 'anthropic-version': '2023-06-01' }
  : { 'content-type': 'application/json', authorization: `Bearer ${key}` };
let status = 0, bytes = 0, error = null;
try {
  const res = await fetch(url, { method: 'POST', headers, body: JSON.stringify(body), tls: { ca } });
  status = res.status;
  bytes = (await res.text()).length;
} catch (e) {
  error = String(e);     // a response cut by the server (the test's Reply.drop_after)
}
console.log(JSON.stringify({ pid: process.pid, status, bytes, error }));
if (after === 'linger') await Bun.sleep(Number(seconds) * 1000);
