// Official `openai` Node SDK against the fake API.
// Modes: chat-stream (stream_options.include_usage), chat, chat-tools, responses-stream, responses.
import OpenAI from 'openai';
import { apiKey, exitNow, parseArgs, run, toolSchema, waitGo } from './common.mjs';

const args = parseArgs(['chat-stream', 'chat', 'chat-tools', 'responses-stream', 'responses'], 'gpt-5.1');
const client = new OpenAI({ apiKey: apiKey(), baseURL: `${args.baseURL.replace(/\/$/, '')}/v1`, maxRetries: 0 });
const messages = [{ role: 'user', content: args.prompt }];
const chatTools = [{ type: 'function', function: { name: 'get_weather', description: 'Weather for a city', parameters: toolSchema } }];

const chatUsage = (u) => ({
  input_tokens: u.prompt_tokens, output_tokens: u.completion_tokens,
  cache_read_input_tokens: u.prompt_tokens_details?.cached_tokens ?? null,
});

async function chat() {
  if (args.mode === 'chat-stream') {
    const stream = await client.chat.completions.create({
      model: args.model, messages, stream: true, stream_options: { include_usage: true },
    });
    const out = { text: '', tool_calls: [], stop_reason: null };
    let deltas = 0;
    for await (const chunk of stream) {
      out.id = chunk.id; out.model = chunk.model;
      if (chunk.usage) Object.assign(out, chatUsage(chunk.usage));
      for (const choice of chunk.choices) {
        out.text += choice.delta.content ?? '';
        if (choice.delta.content && ++deltas === args.exitAfter) exitNow('node-openai', args, { text: out.text });
        out.stop_reason = choice.finish_reason ?? out.stop_reason;
      }
    }
    return out;
  }
  const r = await client.chat.completions.create({
    model: args.model, messages, ...(args.mode === 'chat-tools' ? { tools: chatTools } : {}),
  });
  const m = r.choices[0].message;
  return {
    id: r.id, model: r.model, stop_reason: r.choices[0].finish_reason, text: m.content ?? '',
    ...chatUsage(r.usage),
    tool_calls: (m.tool_calls ?? []).map((t) => ({ id: t.id, name: t.function.name, arguments: JSON.parse(t.function.arguments) })),
  };
}

function summarizeResponse(r, streamedText = null) {
  return {
    id: r.id, model: r.model, stop_reason: r.status, text: r.output_text ?? r.output
      .filter((o) => o.type === 'message').flatMap((o) => o.content).map((c) => c.text).join(''),
    streamed_text: streamedText,
    input_tokens: r.usage.input_tokens, output_tokens: r.usage.output_tokens,
    cache_read_input_tokens: r.usage.input_tokens_details?.cached_tokens ?? null,
    tool_calls: r.output.filter((o) => o.type === 'function_call')
      .map((o) => ({ id: o.call_id, name: o.name, arguments: JSON.parse(o.arguments) })),
  };
}

async function responses() {
  if (args.mode === 'responses-stream') {
    const stream = await client.responses.create({ model: args.model, input: args.prompt, stream: true });
    let text = ''; let final = null;
    for await (const event of stream) {
      if (event.type === 'response.output_text.delta') text += event.delta;
      if (event.type === 'response.completed') final = event.response;
    }
    return summarizeResponse(final, text);
  }
  return summarizeResponse(await client.responses.create({ model: args.model, input: args.prompt }));
}

async function call() {
  try {
    return args.mode.startsWith('chat') ? await chat() : await responses();
  } catch (e) {
    // HTTP error status, or an error inside a stream (status undefined); connection errors
    // mean the harness is broken and fail the script.
    if (e instanceof OpenAI.APIError && !(e instanceof OpenAI.APIConnectionError)) {
      return { error: { status: e.status ?? null, type: e.type ?? e.error?.type, message: e.error?.message, code: e.code ?? null } };
    }
    throw e;
  }
}

await waitGo(args);
await run('node-openai', args, call);
