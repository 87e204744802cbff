// Bounded loopback load test of `klc serve`: N concurrent streaming clients send R rounds of
// requests to one served workspace. Prints requests/s, p50/p99 time to first token, failed
// requests and the server's resident memory after each round (flat when nothing leaks).
// Usage: npm run bench:serve [-- --clients 8 --rounds 3 --requests 32 --max-tokens 32 --backend auto --workspace DIR --model DIR]
// It never fails on time; it exits 1 when a request failed.
/* global fetch */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const projectRoot = resolve(import.meta.dirname, '..', '..');
const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '3' },
    requests: { type: 'string', default: '32' },
    'max-tokens': { type: 'string', default: '32' },
    backend: { type: 'string', default: 'auto' },
    workspace: { type: 'string', default: join(projectRoot, 'src', 'serve') },
    model: { type: 'string' },
  },
});
const clients = Number(values.clients);
const rounds = Number(values.rounds);
const perRound = Number(values.requests);
const maxTokens = Number(values['max-tokens']);
const workspace = resolve(values.workspace);

const args = [join(projectRoot, 'bin', 'klc.js'), 'serve', '--port', '0', '--workspace', workspace, '--backend', values.backend,
  '--cache-dir', mkdtempSync(join(tmpdir(), 'klc-serve-load-')), '--max-concurrent', String(clients * 2)];
if (values.model) args.push('--model', resolve(values.model));
const server = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
let serverLog = '';
server.stderr.setEncoding('utf8').on('data', (d) => (serverLog += d));
const url = await new Promise((ok, fail) => {
  let out = '';
  server.stdout.setEncoding('utf8').on('data', (d) => {
    out += d;
    const m = /listening on (http:\/\/\S+)/.exec(out);
    if (m) ok(m[1]);
  });
  server.once('exit', (code) => fail(new Error(`klc serve exited with ${code}:\n${serverLog}`)));
});
const model = `kimi-linear@${basename(workspace)}`;
const loaded = /^model .* on .*$/m.exec(serverLog)?.[0] ?? '';

/** Resident memory of the server process in MiB (Linux /proc). */
function serverRssMiB() {
  const status = readFileSync(`/proc/${server.pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)[1]) / 1024;
}

/** One streamed chat completion; resolves to its time to first text and whole time, or its error. */
async function one(i) {
  const started = performance.now();
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model, stream: true, max_tokens: maxTokens, seed: i, temperature: 0.7, messages: [{ role: 'user', content: `Question ${i}: what does this code do?` }] }),
  });
  if (res.status !== 200) return { error: `HTTP ${res.status}: ${await res.text()}` };
  let ttft;
  let buffer = '';
  let done = false;
  const decoder = new TextDecoder();
  for await (const bytes of res.body) {
    buffer += decoder.decode(bytes, { stream: true });
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event.replace(/^data: /, '');
      if (data === '[DONE]') done = true;
      else if (ttft === undefined && JSON.parse(data).choices?.[0]?.delta?.content) ttft = performance.now() - started;
    }
  }
  if (!done) return { error: 'the stream ended without [DONE]' };
  return { ttft: ttft ?? performance.now() - started, total: performance.now() - started };
}

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

console.log(loaded);
console.log(`klc serve at ${url}, ${model}, ${clients} clients, ${rounds} rounds of ${perRound} streamed requests, max_tokens ${maxTokens}`);
console.log(`server memory before: ${serverRssMiB().toFixed(1)} MiB`);
let failures = 0;
try {
  for (let round = 1; round <= rounds; round++) {
    const results = [];
    let next = 0;
    const started = performance.now();
    await Promise.all(Array.from({ length: clients }, async () => {
      while (next < perRound) results.push(await one(round * perRound + next++).catch((e) => ({ error: String(e) })));
    }));
    const seconds = (performance.now() - started) / 1000;
    const ok = results.filter((r) => !r.error);
    const failed = results.filter((r) => r.error);
    failures += failed.length;
    for (const f of failed.slice(0, 3)) console.log(`  failed: ${f.error}`);
    const ttfts = ok.map((r) => r.ttft).sort((a, b) => a - b);
    console.log(
      `round ${round}: ${(ok.length / seconds).toFixed(2)} requests/s, TTFT p50 ${percentile(ttfts, 50)?.toFixed(0)} ms p99 ${percentile(ttfts, 99)?.toFixed(0)} ms, ` +
      `${failed.length} failed, server memory ${serverRssMiB().toFixed(1)} MiB`,
    );
  }
} finally {
  server.kill('SIGTERM');
}
console.log(failures === 0 ? 'no failed requests' : `${failures} failed requests`);
process.exit(failures === 0 ? 0 : 1);
