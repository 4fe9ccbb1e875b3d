#!/usr/bin/env node
// A tiny MCP server over stdio built with the official @modelcontextprotocol/sdk (Node):
// the Node twin of tests/support/mcp_server.py, for agents that launch a Node server.
// Tools: add(a, b) -> a + b; echo(text) -> text.
//   AGTAP_MCP_LOG=FILE    append every JSON-RPC message read from stdin to FILE, one JSON line
//                         each, {"pid": <this process>, "message": <the message>}
//   AGTAP_MCP_DELAY=SECS  wait that long before reading stdin (a server slow to start)
import fs from 'node:fs';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { z } from 'zod';

const server = new McpServer({ name: 'agtap-test-node-server', version: '1.0.0' });
// Each result also comes as structuredContent (an object, as the spec wants), like the Python
// SDK's: Gemini CLI 0.61 reads a text-only result of this SDK as a tool error.
server.registerTool('add', {
  description: 'Add two integers.', inputSchema: { a: z.number().int(), b: z.number().int() },
  outputSchema: { result: z.number().int() },
}, async ({ a, b }) => ({ content: [{ type: 'text', text: String(a + b) }], structuredContent: { result: a + b } }));
server.registerTool('echo', {
  description: 'Return the text unchanged.', inputSchema: { text: z.string() }, outputSchema: { result: z.string() },
}, async ({ text }) => ({ content: [{ type: 'text', text }], structuredContent: { result: text } }));

const delay = Number(process.env.AGTAP_MCP_DELAY || 0);
if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay * 1000));
const transport = new StdioServerTransport();
await server.connect(transport);
const log = process.env.AGTAP_MCP_LOG;
if (log) {
  const handle = transport.onmessage;   // set by connect(): log, then hand on
  transport.onmessage = (message, extra) => {
    fs.appendFileSync(log, `${JSON.stringify({ pid: process.pid, message })}\n`);
    handle(message, extra);
  };
}
