/**
 * A model's identity for cache keys: config.json plus every safetensors header (names, dtypes,
 * shapes, offsets) and file size. Reading headers instead of hashing tens of gigabytes of weights
 * keeps it instant; a changed weight file almost always changes its size or header, and a user
 * who edits weights in place can clear the cache.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { parseConfig } from './model/config';
import { DummyWeights } from './model/dummy-weights';

export interface ModelIdentity {
  id: string;
  /** Parameter count, summed over the safetensors headers. */
  parameters: number;
}

export async function identifyModel(dir: string): Promise<ModelIdentity> {
  let parameters = 0;
  const h = createHash('sha256');
  h.update(await fs.readFile(join(dir, 'config.json')));
  const shards = (await fs.readdir(dir)).filter((n) => n.endsWith('.safetensors')).sort();
  for (const name of shards) {
    const handle = await fs.open(join(dir, name), 'r');
    try {
      const size = (await handle.stat()).size;
      const len = Buffer.alloc(8);
      await handle.read(len, 0, 8, 0);
      const hlen = Number(len.readBigUInt64LE());
      const header = Buffer.alloc(Math.max(0, Math.min(hlen, size - 8)));
      await handle.read(header, 0, header.length, 8);
      h.update(`${name}\0${size}\0`).update(header);
      parameters += countParameters(header);
    } finally {
      await handle.close();
    }
  }
  return { id: h.digest('hex').slice(0, 32), parameters };
}

function countParameters(header: Buffer): number {
  try {
    const json = JSON.parse(header.toString('utf8')) as Record<string, { shape?: number[] }>;
    return Object.entries(json).reduce((n, [name, t]) => (name === '__metadata__' || !t.shape ? n : n + t.shape.reduce((a, b) => a * b, 1)), 0);
  } catch {
    return 0;
  }
}

/**
 * The identity of dummy weights: the config's bytes and the seed determine every value
 * (dummy-weights.ts), so they are the whole identity.
 */
export async function identifyDummy(spec: { configFile: string; seed: number }): Promise<ModelIdentity> {
  const config = await fs.readFile(spec.configFile);
  const id = createHash('sha256').update('dummy\0').update(config).update(`\0${spec.seed}`).digest('hex').slice(0, 32);
  return { id, parameters: new DummyWeights(parseConfig(JSON.parse(config.toString('utf8')), spec.configFile), spec.seed, spec.configFile).parameters };
}
