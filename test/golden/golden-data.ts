/** Access to the golden data (test/fixtures/golden, a copy of shared/golden): paths, tensors by name, and the comparisons the golden tests use. */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { SafetensorsFile } from '../../src/engine/model/safetensors';

/**
 * The golden data lives in the repository (a copy of the team's shared/golden) so that a clean
 * clone tests against it; KLC_GOLDEN_DIR points the tests at another copy.
 */
export const GOLDEN_DIR = resolve(process.env.KLC_GOLDEN_DIR ?? join(__dirname, '..', 'fixtures', 'golden'));
export const TINY_DIR = join(GOLDEN_DIR, 'tiny-kimi-public');
export const KDA_DIR = join(GOLDEN_DIR, 'kda');

export function goldenAvailable(): boolean {
  return existsSync(join(TINY_DIR, 'reference.safetensors')) && existsSync(join(KDA_DIR, 'kda_golden.safetensors'));
}

/** max |a − b| / max |b|: the error relative to the reference's scale. */
export function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs reference ${b.length}`);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    if (!Number.isFinite(a[i])) return Infinity;
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

export function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs reference ${b.length}`);
  let diff = 0;
  for (let i = 0; i < b.length; i++) diff = Math.max(diff, Number.isFinite(a[i]) ? Math.abs(a[i] - b[i]) : Infinity);
  return diff;
}

export async function openReference(file: string): Promise<SafetensorsFile> {
  return SafetensorsFile.open(file);
}
