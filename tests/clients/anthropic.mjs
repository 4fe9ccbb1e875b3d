// Official @anthropic-ai/sdk against the fake API. Modes: stream, nonstream, tools, tools-stream.
import Anthropic from '@anthropic-ai/sdk';
import { apiKey, exitNow, parseArgs, run, toolSchema, waitGo } from './common.mjs';

const args = parseArgs(['stream', 'nonstream', 'tools', 'tools-stream'], 'claude-sonnet-5');
// maxRetries 0: a scripted 429 must reach the script as exactly one request.
const client = new Anthropic({ apiKey: apiKey(), baseURL: args.baseURL, maxRetries: 0 });
const params = { model: args.model, max_tokens: 256, messages: [{ role: 'user', content: args.prompt }] };
if (args.mode.startsWith('tools')) {
  params.tools = [{ name: 'get_weather', description: 'Weather for a city', input_schema: toolSchema }];
}

function summarize(msg, streamedText = null) {
  const u = msg.usage;
  return {
    id: msg.id, model: msg.model, stop_reason: msg.stop_reason, streamed_text: streamedText,
    text: msg.content.filter((b) => b.type === 'text').map((b) => b.text).join(''),
    tool_calls: msg.content.filter((b) => b.type === 'tool_use')
      .map((b) => ({ id: b.id, name: b.name, arguments: b.input })),
    input_tokens: u.input_tokens, output_tokens: u.output_tokens,
    cache_creation_input_tokens: u.cache_creation_input_tokens,
    cache_read_input_tokens: u.cache_read_input_tokens,
  };
}

async function call() {
  try {
    if (args.mode === 'stream' || args.mode === 'tools-stream') {
      const stream = client.messages.stream(params);
      let text = '';
      let deltas = 0;
      stream.on('text', (t) => {
        text += t;
        if (++deltas === args.exitAfter) exitNow('node-anthropic', args, { text });
      });
      const msg = await stream.finalMessage();
      return summarize(msg, text);
    }
    return summarize(await client.messages.create(params));
  } catch (e) {
    // HTTP error status, or `event: error` inside a stream (status undefined); connection
    // errors mean the harness is broken and fail the script.
    if (e instanceof Anthropic.APIError && !(e instanceof Anthropic.APIConnectionError)) {
      return { error: { status: e.status ?? null, type: e.error?.error?.type, message: e.error?.error?.message } };
    }
    throw e;
  }
}

await waitGo(args);
await run('node-anthropic', args, call);
