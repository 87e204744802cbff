/**
 * A model's identity for state cache keys: two models share saved states only when they would
 * compute the same thing. For a checkpoint folder that is its real path, config.json, and the
 * content of every weight file: the SHA-256 of each safetensors file, computed once and then
 * remembered by path, size, mtime and inode (a file rewritten in place gets a new mtime). Hashing
 * reads the weights once, at the first open after they change; later opens only stat them.
 *
 * Dummy weights (generated from a config and a seed) are identified by those two alone.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import { writeFileAtomic } from '../common/atomic';
import { parseConfig } from './model/config';
import { DummyWeights } from './model/dummy-weights';

/** What a model is made from: a checkpoint folder, or weights generated from a config file and a seed. */
export type ModelDescriptor = { kind: 'checkpoint'; dir: string } | { kind: 'dummy'; configFile: string; seed: number };

export interface ModelIdentity {
  id: string;
  /** Parameter count, summed over the safetensors headers. */
  parameters: number;
}

export interface IdentifyOptions {
  /** Where weight digests are remembered between runs (a JSON file); none: hash every time. */
  digestCache?: string;
}

/** Bumped when what goes into an identity changes, so that no old key can collide with a new one. */
const IDENTITY_VERSION = 'model-id 2';

export async function identifyModel(model: ModelDescriptor, options: IdentifyOptions = {}): Promise<ModelIdentity> {
  switch (model.kind) {
    case 'checkpoint':
      return identifyCheckpoint(model.dir, options);
    case 'dummy':
      return identifyDummy(model);
  }
}

/** The config's bytes and the seed determine every dummy weight (dummy-weights.ts), so they are the whole identity. */
async function identifyDummy(spec: { configFile: string; seed: number }): Promise<ModelIdentity> {
  const config = await fs.readFile(spec.configFile);
  const id = createHash('sha256').update('dummy\0').update(config).update(`\0${spec.seed}`).digest('hex').slice(0, 32);
  return { id, parameters: new DummyWeights(parseConfig(JSON.parse(config.toString('utf8')), spec.configFile), spec.seed, spec.configFile).parameters };
}

async function identifyCheckpoint(dir: string, options: IdentifyOptions): Promise<ModelIdentity> {
  const real = await fs.realpath(dir);
  const h = createHash('sha256').update(`${IDENTITY_VERSION}\0checkpoint\0${real}\0`);
  h.update(await fs.readFile(join(real, 'config.json')));
  const shards = (await fs.readdir(real)).filter((n) => n.endsWith('.safetensors')).sort();
  const digests = new DigestCache(options.digestCache);
  let parameters = 0;
  for (const name of shards) {
    const path = join(real, name);
    const [digest, header] = await Promise.all([digests.digest(path), readHeader(path)]);
    h.update(`\0${name}\0${digest}`);
    parameters += countParameters(header);
  }
  await digests.save();
  return { id: h.digest('hex').slice(0, 32), parameters };
}

interface Remembered {
  size: number;
  mtimeMs: number;
  ino: number;
  sha256: string;
}

/** SHA-256 of files, remembered in one JSON file by path while size, mtime and inode stay the same. */
class DigestCache {
  private entries: Record<string, Remembered> | undefined;
  private changed = false;

  constructor(private readonly file: string | undefined) {}

  async digest(path: string): Promise<string> {
    const stat = await fs.stat(path);
    const entries = await this.load();
    const known = entries[path];
    if (known && known.size === stat.size && known.mtimeMs === stat.mtimeMs && known.ino === stat.ino) return known.sha256;
    const sha256 = await hashFile(path);
    entries[path] = { size: stat.size, mtimeMs: stat.mtimeMs, ino: stat.ino, sha256 };
    this.changed = true;
    return sha256;
  }

  async save(): Promise<void> {
    if (!this.file || !this.changed || !this.entries) return;
    await writeFileAtomic(this.file, JSON.stringify(this.entries));
  }

  private async load(): Promise<Record<string, Remembered>> {
    if (this.entries) return this.entries;
    if (!this.file) return (this.entries = {});
    try {
      const parsed: unknown = JSON.parse(await fs.readFile(this.file, 'utf8'));
      this.entries = isRecord(parsed) ? (Object.fromEntries(Object.entries(parsed).filter(([, v]) => isRemembered(v))) as Record<string, Remembered>) : {};
    } catch {
      // Missing or unreadable: the digests are computed again and the file rewritten.
      this.entries = {};
    }
    return this.entries;
  }
}

/**
 * The worker that hashes a file: a 48B checkpoint's first open hashes ~30 to 100 GB, which on the
 * engine's main thread would take turns with loading the same weights.
 */
const HASH_WORKER = `
const { createHash } = require('node:crypto');
const { createReadStream } = require('node:fs');
const { parentPort, workerData } = require('node:worker_threads');
const h = createHash('sha256');
createReadStream(workerData, { highWaterMark: 4 * 1024 * 1024 })
  .on('data', (chunk) => h.update(chunk))
  .on('error', (e) => parentPort.postMessage({ error: e.message }))
  .on('end', () => parentPort.postMessage({ sha256: h.digest('hex') }));
`;

function hashFile(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(HASH_WORKER, { eval: true, workerData: path });
    worker.once('message', (m: { sha256?: string; error?: string }) => (m.sha256 ? resolve(m.sha256) : reject(new Error(m.error ?? 'hashing failed'))));
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`hashing ${path} stopped (exit code ${code})`)));
  });
}

async function readHeader(path: string): Promise<Buffer> {
  const handle = await fs.open(path, 'r');
  try {
    const size = (await handle.stat()).size;
    const len = Buffer.alloc(8);
    await handle.read(len, 0, 8, 0);
    const hlen = Number(len.readBigUInt64LE());
    const header = Buffer.alloc(Math.max(0, Math.min(hlen, size - 8)));
    await handle.read(header, 0, header.length, 8);
    return header;
  } finally {
    await handle.close();
  }
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
 * The model id states are keyed by: the identity of the files and the quantization of the weights
 * as loaded (`weights`: 'none', or the scheme applied at load or stored in the checkpoint), so a
 * state ingested with int4 weights is never resumed on the bf16 ones of the same folder. Unquantized
 * weights keep the plain identity, so states saved before quantization existed stay valid.
 */
export function stateModelId(identity: string, weights: string): string {
  if (weights === 'none') return identity;
  return createHash('sha256').update(`${identity}\0weights\0${weights}`).digest('hex').slice(0, 32);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isRemembered(v: unknown): v is Remembered {
  return isRecord(v) && typeof v.size === 'number' && typeof v.mtimeMs === 'number' && typeof v.ino === 'number' && typeof v.sha256 === 'string' && /^[0-9a-f]{64}$/.test(v.sha256);
}
