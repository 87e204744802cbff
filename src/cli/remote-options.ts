/** The options of `--backend remote` (klc ask and ingest): which OpenAI-compatible server and model. */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { UserError } from '../common/errors';
import type { PackSettings } from '../engine/api';
import type { RepoSession } from '../engine/repo-session';
import { RemoteSession } from '../remote/remote-session';
import type { Parsed } from './args';
import { openSession } from './session-options';

export const remoteOptions = {
  endpoint: { type: 'string' },
  'remote-model': { type: 'string' },
  'api-key-file': { type: 'string' },
} as const;

export const remoteUsage = `  --backend remote    ask an OpenAI-compatible server (vLLM, SGLang, klc serve) instead of a local model:
  --endpoint URL      its base URL, e.g. http://gpu-box:8000/v1
  --remote-model NAME the model id it serves
  --api-key-file F    file holding its API key (or set KLC_API_KEY)
                      With --model DIR, DIR's tokenizer counts the packed tokens; else the bundled one estimates.
`;

function apiKey(values: Parsed['values']): string | undefined {
  const file = values['api-key-file'] as string | undefined;
  if (file === undefined) return process.env.KLC_API_KEY || undefined;
  try {
    return readFileSync(resolve(file), 'utf8').trim();
  } catch (e) {
    throw new UserError(`cannot read the API key file ${file}: ${(e as Error).message}`, file);
  }
}

/** A remote session for --backend remote, a local EngineSession otherwise. */
export async function openRepoSession(values: Parsed['values'], workspace: PackSettings): Promise<RepoSession> {
  if (values.backend !== 'remote') {
    if (values.endpoint !== undefined || values['remote-model'] !== undefined) throw new UserError('--endpoint and --remote-model go with --backend remote');
    return openSession(values, workspace);
  }
  const url = values.endpoint as string | undefined;
  const model = values['remote-model'] as string | undefined;
  if (!url || !model) throw new UserError('--backend remote needs --endpoint URL and --remote-model NAME (GET <URL>/models lists the names)');
  const key = apiKey(values);
  return RemoteSession.open({
    endpoint: { url, model, ...(key ? { apiKey: key } : {}) },
    tokenizerDir: values.model ? resolve(values.model as string) : undefined,
    workspace,
    log: (line) => process.stderr.write(`${line}\n`),
  });
}
