// One Anthropic Messages call with nothing but Node's own https module (its static OpenSSL).
// node node_https.mjs --base-url URL [--model M] [--wait-go]; key from $AGTAP_TEST_API_KEY,
// CA from $NODE_EXTRA_CA_CERTS. For the container tests, whose roots have no node_modules.
// Prints {"client","pid","results":[{"status","body"}]}; --wait-go prints {"ready": pid} and
// waits for a line on stdin first.
import https from 'node:https';
import readline from 'node:readline';

const argv = process.argv.slice(2);
const opt = (name, dflt) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : dflt);
const url = new URL('/v1/messages', opt('--base-url'));
const body = JSON.stringify({
  model: opt('--model', 'claude-sonnet-5'), max_tokens: 64, messages: [{ role: 'user', content: 'Say hello.' }],
});

async function main() {
  if (argv.includes('--wait-go')) {
    console.log(JSON.stringify({ ready: process.pid }));
    const rl = readline.createInterface({ input: process.stdin });
    await new Promise((resolve) => rl.once('line', resolve));
    rl.close();
  }
  const req = https.request(url, {
    method: 'POST', agent: false,
    headers: {
      'content-type': 'application/json', 'anthropic-version': '2023-06-01',
      'x-api-key': process.env.AGTAP_TEST_API_KEY || 'sk-agtap-test-key', 'content-length': Buffer.byteLength(body),
    },
  }, (res) => {
    let text = '';
    res.setEncoding('utf8');
    res.on('data', (d) => { text += d; });
    res.on('end', () => {
      const results = [{ status: res.statusCode, body: text }];
      console.log(JSON.stringify({ client: 'node-https', pid: process.pid, results }));
    });
  });
  req.on('error', (e) => { console.error(e); process.exit(1); });
  req.end(body);
}

main();
