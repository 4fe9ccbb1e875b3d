// HTTP/2 requests with nothing but Node's own http2 module, all on ONE session (connection).
// node node_http2.mjs --base-url URL --plan JSON [--wait-go]
//   URL: https://... (TLS, ALPN h2; CA from $NODE_EXTRA_CA_CERTS) or http://... (h2c, prior knowledge)
//   JSON: a list of steps run in order; a step is {"path", "method"="POST", "body"=null,
//         "headers"={}, "parallel"=1, "repeat"=1, "churn"=false}: `parallel` copies of the
//         request in flight at once, the whole step `repeat` times; or a list of such steps,
//         all in flight at once (each once). churn: every request also
//         sends a header whose value is new each time (x-agtap-churn, ~120 bytes), which
//         Node's HPACK encoder indexes: the dynamic table keeps evicting.
// The API key ($AGTAP_TEST_API_KEY) goes in x-api-key and authorization: Bearer.
// Prints {"client":"node-http2","pid","results":[{"status","bytes","body"}...]} in request order
// (body only when under 64 KiB); --wait-go prints {"ready": pid} and waits for a line on stdin.
import http2 from 'node:http2';
import crypto from 'node:crypto';
import { waitGo } from './common.mjs';

const argv = process.argv.slice(2);
const opt = (name, dflt) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : dflt);
const base = opt('--base-url');
const plan = JSON.parse(opt('--plan', '[]'));
const key = process.env.AGTAP_TEST_API_KEY || 'sk-agtap-test-key';

function request(session, step) {
  return new Promise((resolve, reject) => {
    const headers = {
      ':method': step.method || 'POST', ':path': step.path,
      'content-type': 'application/json', 'anthropic-version': '2023-06-01',
      'x-api-key': key, authorization: `Bearer ${key}`, ...(step.headers || {}),
    };
    if (step.churn) headers['x-agtap-churn'] = crypto.randomBytes(60).toString('hex');
    const req = session.request(headers, { endStream: step.body == null });
    const chunks = [];
    let status = 0;
    req.on('response', (h) => { status = h[':status']; });
    req.on('data', (d) => chunks.push(d));
    req.on('end', () => {
      const buf = Buffer.concat(chunks);
      resolve({ status, bytes: buf.length, body: buf.length < 65536 ? buf.toString('utf8') : null });
    });
    req.on('error', reject);
    if (step.body != null) req.end(typeof step.body === 'string' ? step.body : JSON.stringify(step.body));
  });
}

async function main() {
  await waitGo({ waitGo: argv.includes('--wait-go') });
  const session = http2.connect(base);
  session.on('error', (e) => { console.error(e); process.exit(1); });
  const results = [];
  for (const step of plan) {
    if (Array.isArray(step)) {
      results.push(...(await Promise.all(step.map((s) => request(session, s)))));
      continue;
    }
    for (let r = 0; r < (step.repeat || 1); r++) {
      const inflight = [];
      for (let p = 0; p < (step.parallel || 1); p++) inflight.push(request(session, step));
      results.push(...(await Promise.all(inflight)));
    }
  }
  session.close();
  console.log(JSON.stringify({ client: 'node-http2', pid: process.pid, results }));
}

main().catch((e) => { console.error(e); process.exit(1); });
