// Shared command line and output for the Node client scripts (mirrors pyclient_common.py).
// node <script>.mjs --base-url URL --mode MODE [--repeat N] [--model M] [--wait-go]
// API key from $AGTAP_TEST_API_KEY; the test CA comes from $NODE_EXTRA_CA_CERTS, which
// Node's TLS (and so fetch/undici, which the SDKs use, HTTP/1.1 only) adds to its roots.
// Prints ONE JSON line {"client","mode","pid","results":[...]}; exit 0 also on API errors.
import fs from 'node:fs';
import readline from 'node:readline';

export function parseArgs(modes, defaultModel) {
  const args = {
    mode: modes[0], model: defaultModel, repeat: 1, parallel: 1, exitAfter: 0, prompt: 'Say hello.', waitGo: false,
  };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--base-url') args.baseURL = argv[++i];
    else if (a === '--mode') args.mode = argv[++i];
    else if (a === '--model') args.model = argv[++i];
    else if (a === '--repeat') args.repeat = Number(argv[++i]);
    else if (a === '--prompt') args.prompt = argv[++i];
    else if (a === '--prompt-size') args.prompt = bigPrompt(Number(argv[++i]));
    else if (a === '--parallel') args.parallel = Number(argv[++i]);
    else if (a === '--exit-after') args.exitAfter = Number(argv[++i]);
    else if (a === '--python') args.python = argv[++i];
    else if (a === '--tool') args.tool = argv[++i];
    else if (a === '--arguments') args.toolArguments = JSON.parse(argv[++i]);
    else if (a === '--wait-go') args.waitGo = true;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!modes.includes(args.mode)) throw new Error(`mode ${args.mode} not in ${modes}`);
  return args;
}

// `size` bytes of ASCII words: a large request body that still looks like a prompt.
export const bigPrompt = (size) => 'Summarize this log line please. '.repeat(Math.floor(size / 32) + 1).slice(0, size);

// Die mid-stream like a killed agent (no socket shutdown). writeSync: console.log to a pipe
// is asynchronous and would be lost by process.exit.
export function exitNow(client, args, partial) {
  fs.writeSync(1, `${JSON.stringify({ client, mode: args.mode, pid: process.pid, results: [{ aborted: true, ...partial }] })}\n`);
  process.exit(0);
}

export const apiKey = () => process.env.AGTAP_TEST_API_KEY || 'sk-agtap-test-key';

export async function waitGo(args) {
  if (!args.waitGo) return;
  console.log(JSON.stringify({ ready: process.pid }));
  const rl = readline.createInterface({ input: process.stdin });
  await new Promise((resolve) => rl.once('line', resolve));
  rl.close();
}

export async function run(client, args, call) {
  let results = [];
  try {
    if (args.parallel > 1) {
      // Several requests in flight at once: undici opens one connection for each.
      results = await Promise.all(Array.from({ length: args.repeat * args.parallel }, () => call()));
    } else {
      for (let i = 0; i < args.repeat; i++) results.push(await call());
    }
  } catch (e) {
    console.error(e);
    console.log(JSON.stringify({ client, mode: args.mode, pid: process.pid, results, failed: true }));
    process.exit(1);
  }
  console.log(JSON.stringify({ client, mode: args.mode, pid: process.pid, results }));
}

export const toolSchema = {
  type: 'object', properties: { city: { type: 'string' } }, required: ['city'],
};
