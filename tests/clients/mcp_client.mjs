// Official @modelcontextprotocol/sdk (Node) client over stdio: spawns the Python MCP server
// (tests/support/mcp_server.py) with child_process, whose stdio pipes libuv makes with
// socketpair(2), then initialize, tools/list, tools/call add(2, 3).
// node mcp_client.mjs --python PATH [--wait-go] [--tool NAME --arguments JSON]
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { parseArgs, run, waitGo } from './common.mjs';

const args = parseArgs(['session'], null);
const server = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'support', 'mcp_server.py');

async function call() {
  const transport = new StdioClientTransport({
    command: args.python || 'python3', args: [server], env: { ...process.env }, stderr: 'inherit',
  });
  const client = new Client({ name: 'agtap-test-node-client', version: '1.0.0' });
  await client.connect(transport);  // sends initialize + notifications/initialized
  const tools = await client.listTools();
  const tool = args.tool ?? 'add';
  const result = await client.callTool({ name: tool, arguments: args.toolArguments ?? { a: 2, b: 3 } });
  const out = {
    server_name: client.getServerVersion()?.name, server_pid: transport.pid,
    tools: tools.tools.map((t) => t.name).sort(),
    tool, text: result.content.filter((c) => c.type === 'text').map((c) => c.text).join(''),
    structured: result.structuredContent ?? null, is_error: result.isError ?? false,
  };
  await client.close();
  return out;
}

await waitGo(args);
await run('node-mcp', args, call);
