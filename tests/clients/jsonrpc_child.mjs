// Hand-written newline-delimited JSON-RPC over a child's stdin/stdout, no MCP SDK: Node's
// child_process (libuv, socketpair(2) for 'pipe' stdio) writes requests to the Python MCP
// server and reads its responses line by line. This is the MCP stdio framing
// (https://modelcontextprotocol.io/specification/2025-06-18/basic/transports#stdio).
// node jsonrpc_child.mjs --python PATH [--wait-go] [--tool NAME --arguments JSON]
import { spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs, run, waitGo } from './common.mjs';

const args = parseArgs(['session'], null);
const server = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'support', 'mcp_server.py');

async function call() {
  const child = spawn(args.python || 'python3', [server], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = readline.createInterface({ input: child.stdout });
  const waiting = new Map();
  lines.on('line', (line) => {
    const msg = JSON.parse(line);
    if (msg.id !== undefined && waiting.has(msg.id)) {
      waiting.get(msg.id)(msg);
      waiting.delete(msg.id);
    }
  });
  let nextId = 1;
  const send = (obj) => child.stdin.write(`${JSON.stringify({ jsonrpc: '2.0', ...obj })}\n`);
  const request = (method, params) => new Promise((resolve) => {
    const id = nextId++;
    waiting.set(id, resolve);
    send({ id, method, params });
  });

  const init = await request('initialize', {
    protocolVersion: '2025-06-18', capabilities: {},
    clientInfo: { name: 'agtap-test-jsonrpc', version: '1.0.0' },
  });
  send({ method: 'notifications/initialized' });
  const tools = await request('tools/list', {});
  const tool = args.tool ?? 'add';
  const called = await request('tools/call', { name: tool, arguments: args.toolArguments ?? { a: 2, b: 3 } });
  child.stdin.end();
  await new Promise((resolve) => child.once('exit', resolve));
  return {
    server_name: init.result?.serverInfo?.name, server_pid: child.pid,
    protocol_version: init.result?.protocolVersion,
    tools: (tools.result?.tools ?? []).map((t) => t.name).sort(),
    tool, text: (called.result?.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join(''),
    structured: called.result?.structuredContent ?? null, is_error: called.result?.isError ?? false,
  };
}

await waitGo(args);
await run('node-jsonrpc', args, call);
