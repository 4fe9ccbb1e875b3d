// N sequential Anthropic calls over one keep-alive connection with Node's https (bench 1).
// node bench/clients/node_calls.mjs URL N [MODE]   (trusts NODE_EXTRA_CA_CERTS)
// Prints {"wall","cpu","user","sys"} of the N calls (process.cpuUsage, start-up excluded).
import https from "node:https";

const [url, nStr, mode = "mixed"] = process.argv.slice(2);
const n = Number(nStr);
const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
const u = new URL(url + "/v1/messages");
const headers = { "x-api-key": "sk-ant-bench", "anthropic-version": "2023-06-01", "content-type": "application/json" };

function call(stream) {
  const body = JSON.stringify({ model: "claude-sonnet-4-5", max_tokens: 256,
    messages: [{ role: "user", content: "Say hello." }], stream });
  return new Promise((resolve, reject) => {
    const req = https.request({ hostname: u.hostname, port: u.port, path: u.pathname, method: "POST", agent,
      headers: { ...headers, "content-length": Buffer.byteLength(body) } }, (res) => {
      let buf = "", events = 0;
      res.setEncoding("utf8");
      res.on("data", (d) => {   // split SSE events as an SDK does
        buf += d;
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) { buf = buf.slice(i + 2); events++; }
      });
      res.on("end", () => { if (!stream) JSON.parse(buf); resolve(events); });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

await call(false);   // warm-up: handshake not measured
const c0 = process.cpuUsage(), t0 = performance.now();
for (let i = 0; i < n; i++) {
  const stream = mode === "stream" || (mode === "mixed" && i % 2 === 0);
  await call(stream);
}
const t1 = performance.now(), c1 = process.cpuUsage(c0);
console.log(JSON.stringify({ wall: (t1 - t0) / 1000, cpu: (c1.user + c1.system) / 1e6,
  user: c1.user / 1e6, sys: c1.system / 1e6, calls: n }));
agent.destroy();
