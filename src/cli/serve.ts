/**
 * `klc serve`: the engine behind an OpenAI-compatible HTTP API. Each --workspace is ingested (or
 * restored from its saved state) before the server listens, and is served as the model
 * `kimi-linear@<folder name>`, so that any OpenAI client continues from the cached repository.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { UserError } from '../common/errors';
import type { EngineSession } from '../engine/session';
import { createApiServer, DEFAULT_LIMITS, type ServeLimits } from '../serve/api-server';
import { modelIdFor, ServedWorkspace } from '../serve/served-workspace';
import { intOption, parseCommandArgs, type Parsed } from './args';
import { openSession, progressPrinter, sessionOptions, sessionUsage, workspaceSettings } from './session-options';

const USAGE = `usage: klc serve [--workspace DIR]… [options]

Serves the model over an OpenAI-compatible HTTP API (GET /v1/models, POST /v1/chat/completions,
POST /v1/completions, GET /health). Each workspace is ingested first and served as the model
kimi-linear@<folder name>; every request continues from its cached state. Prints
'listening on http://HOST:PORT' once ready.

  --workspace DIR        folder to serve (repeatable; default: the current folder)
  --host H               address to bind (default 127.0.0.1; any other needs --api-key-file)
  --port N               port (default 8000; 0 picks a free one)
  --api-key-file F       file holding the API key that clients send as "Authorization: Bearer <key>"
  --max-body-bytes N     largest request body (default ${DEFAULT_LIMITS.maxBodyBytes})
  --max-concurrent N     requests accepted at once, running or waiting; more get 429 (default ${DEFAULT_LIMITS.maxConcurrent})
  --max-completion-tokens N  largest max_tokens a request may ask for (default ${DEFAULT_LIMITS.maxCompletionTokens})
${sessionUsage}`;

/** Whether `host` only accepts connections from this machine. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  return isIP(h) === 4 && h.startsWith('127.');
}

/** The key from --api-key-file, required when the server listens beyond this machine. */
export function apiKeyOf(file: string | undefined, host: string): string | undefined {
  if (file === undefined) {
    if (!isLoopback(host)) {
      throw new UserError(`binding ${host} exposes the model and your repository to the network; pass --api-key-file with a key clients must send, or bind 127.0.0.1`);
    }
    return undefined;
  }
  let key: string;
  try {
    key = readFileSync(resolve(file), 'utf8').trim();
  } catch (e) {
    throw new UserError(`cannot read the API key file ${file}: ${(e as Error).message}`, file);
  }
  if (key.length < 8 || /\s/.test(key)) throw new UserError(`the API key in ${file} must be one word of at least 8 characters`, file);
  return key;
}

function limitsOf(values: Parsed['values']): ServeLimits {
  return {
    maxBodyBytes: intOption(values, 'max-body-bytes', 1024) ?? DEFAULT_LIMITS.maxBodyBytes,
    maxConcurrent: intOption(values, 'max-concurrent', 1) ?? DEFAULT_LIMITS.maxConcurrent,
    maxCompletionTokens: intOption(values, 'max-completion-tokens', 1) ?? DEFAULT_LIMITS.maxCompletionTokens,
  };
}

export async function run(argv: string[]): Promise<void> {
  const { values } = parseCommandArgs(
    argv,
    {
      ...sessionOptions,
      workspace: { type: 'string', multiple: true },
      host: { type: 'string' },
      port: { type: 'string' },
      'api-key-file': { type: 'string' },
      'max-body-bytes': { type: 'string' },
      'max-concurrent': { type: 'string' },
      'max-completion-tokens': { type: 'string' },
    },
    USAGE,
    false,
  );
  const host = (values.host as string | undefined) ?? '127.0.0.1';
  const port = intOption(values, 'port', 0) ?? 8000;
  if (port > 65535) throw new UserError(`--port must be at most 65535, got ${port}`);
  const apiKey = apiKeyOf(values['api-key-file'] as string | undefined, host);
  const limits = limitsOf(values);
  const dirs = (values.workspace as unknown as string[] | undefined) ?? [];
  const settings = (dirs.length > 0 ? dirs : [process.cwd()]).map((d) => workspaceSettings([d], values));
  const ids = settings.map((s) => modelIdFor(s.roots[0]));
  const duplicate = ids.find((id, i) => ids.indexOf(id) !== i);
  if (duplicate) throw new UserError(`two workspaces would both be served as ${duplicate}; serve folders with different names`);

  const first = await openSession(values, settings[0]);
  const sessions: EngineSession[] = settings.map((s, i) => (i === 0 ? first : first.forWorkspace(s)));
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const workspaces: ServedWorkspace[] = [];
    for (const [i, session] of sessions.entries()) {
      const r = await session.ingest(settings[i], progressPrinter(), stop.signal);
      process.stderr.write(`${ids[i]}: ${r.tokens} tokens (${r.files} files${r.upToDate ? ', saved state' : `, ingested at ${r.tokensPerSecond.toFixed(1)} tokens/s`})\n`);
      workspaces.push(new ServedWorkspace(ids[i], session));
    }
    const api = createApiServer({ workspaces, maxContext: first.maxContext, apiKey, limits, log: (line) => process.stderr.write(`${line}\n`) });
    await new Promise<void>((resolveListen, reject) => {
      api.server.once('error', (e: NodeJS.ErrnoException) =>
        reject(new UserError(e.code === 'EADDRINUSE' ? `port ${port} on ${host} is in use; pick another with --port (0 picks a free one)` : `cannot listen on ${host}:${port}: ${e.message}`)),
      );
      api.server.listen(port, host, () => resolveListen());
    });
    const address = api.server.address() as AddressInfo;
    const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    process.stdout.write(`listening on http://${shown}:${address.port}\n`);
    await new Promise<void>((r) => (stop.signal.aborted ? r() : stop.signal.addEventListener('abort', () => r(), { once: true })));
    process.stderr.write('shutting down\n');
    await api.close();
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    for (const s of sessions.slice(1)) await s.dispose();
    await first.dispose();
  }
}
