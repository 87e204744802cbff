/** The options that klc ingest, ask and bench share: which model, backend, workspace and cache. */
import { resolve } from 'node:path';
import { existsSync, statSync } from 'node:fs';
import { UserError } from '../common/errors';
import type { IngestProgress, PackSettings } from '../engine/api';
import { isSliceTokens, MAX_SLICE_TOKENS, MIN_SLICE_TOKENS, SLICE_CHOICES, type MemoryBudget } from '../engine/plan/memory-plan';
import { parseBytes } from '../common/sizes';
import { defaultCacheDir, EngineSession } from '../engine/session';
import { backendOption, dummyOption, intOption, quantizationOption, quantizationUsage, weightOptions, weightUsage, type Parsed } from './args';

export const sessionOptions = {
  model: { type: 'string' },
  backend: { type: 'string' },
  'max-tokens': { type: 'string' },
  'cache-dir': { type: 'string' },
  ...weightOptions,
  'gpu-memory': { type: 'string' },
  quantization: { type: 'string' },
  'prefill-slice': { type: 'string' },
} as const;

export const sessionUsage = `  --model DIR         checkpoint folder (default: the bundled tiny checkpoint, whose answers are not meaningful)
  --backend B         auto | cuda | onnx | reference (default auto)
  --max-tokens N      token budget for the packed workspace
  --cache-dir DIR     where ingested states are saved (default ${defaultCacheDir()})
  --gpu-memory BYTES  GPU memory the CUDA backend may plan for (24GB, 24GiB or bytes; default the free memory);
                      it plans the MLA cache for --max-tokens tokens (default the config's maximum that fits)
  --prefill-slice N   tokens per prefill call while ingesting (${MIN_SLICE_TOKENS} to ${MAX_SLICE_TOKENS}; default the longest of
                      ${SLICE_CHOICES.join(', ')} that fits): longer slices read each weight and cached row fewer times, and need more workspace
${quantizationUsage}${weightUsage}`;

export function workspaceSettings(dirs: string[], values: Parsed['values']): PackSettings {
  const roots = (dirs.length > 0 ? dirs : [process.cwd()]).map((d) => resolve(d));
  for (const r of roots) {
    if (!existsSync(r) || !statSync(r).isDirectory()) throw new UserError(`${r} is not a folder; pass the workspace folder to ingest`, r);
  }
  const maxTokens = intOption(values, 'max-tokens', 1);
  return { roots, ...(maxTokens !== undefined ? { maxTokens } : {}) };
}

export async function openSession(values: Parsed['values'], workspace: PackSettings): Promise<EngineSession> {
  return EngineSession.open({
    modelDir: values.model ? resolve(values.model as string) : undefined,
    dummy: dummyOption(values),
    backend: backendOption(values),
    cacheDir: values['cache-dir'] ? resolve(values['cache-dir'] as string) : defaultCacheDir(),
    workspace,
    memory: memoryBudget(values, workspace),
    log: (line) => process.stderr.write(`${line}\n`),
  });
}

export function memoryBudget(values: Parsed['values'], workspace: Pick<PackSettings, 'maxTokens'>): MemoryBudget {
  const limit = values['gpu-memory'];
  const gpuMemory = typeof limit === 'string' ? parseBytes(limit) : undefined;
  if (typeof limit === 'string' && !gpuMemory) throw new UserError(`--gpu-memory must be a size such as 24GB, 24GiB or a number of bytes, got '${limit}'`);
  const quantization = quantizationOption(values);
  const sliceTokens = intOption(values, 'prefill-slice', MIN_SLICE_TOKENS);
  if (sliceTokens !== undefined && !isSliceTokens(sliceTokens)) throw new UserError(`--prefill-slice must be ${MIN_SLICE_TOKENS} to ${MAX_SLICE_TOKENS} tokens, got ${sliceTokens}`);
  return {
    ...(workspace.maxTokens !== undefined ? { contextTokens: workspace.maxTokens } : {}),
    ...(gpuMemory ? { gpuMemory } : {}),
    ...(quantization ? { quantization } : {}),
    ...(sliceTokens !== undefined ? { sliceTokens } : {}),
  };
}

/** A one-line progress display on stderr when it is a terminal; nothing otherwise. */
export function progressPrinter(): (p: IngestProgress) => void {
  if (!process.stderr.isTTY) return () => {};
  let last = 0;
  return (p) => {
    const now = Date.now();
    if (now - last < 200 && p.phase === 'prefill') return;
    last = now;
    const pct = p.tokensTotal > 0 ? ((100 * p.tokensDone) / p.tokensTotal).toFixed(1) : '0';
    const eta = p.etaSeconds !== undefined ? `, ${Math.ceil(p.etaSeconds)} s left` : '';
    const line = p.phase === 'prefill' ? `prefill ${pct}% (${p.tokensDone}/${p.tokensTotal} tokens, ${p.tokensPerSecond.toFixed(0)} tok/s${eta})` : p.phase;
    process.stderr.write(`\r\x1b[K${line}`);
    if (p.phase === 'save') process.stderr.write('\r\x1b[K');
  };
}
