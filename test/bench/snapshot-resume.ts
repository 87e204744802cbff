/**
 * `npm run bench:snapshot`: what saving and restoring the repository snapshot cost, at the 48B
 * model's MLA cache (7 MLA layers, 576 bf16 values = 1152 bytes per row): a snapshot of N tokens is
 * written, read back whole into a sink (as a restore hands blocks to the GPU), then the ids change
 * 2000 tokens before the end and the snapshot of a state resumed 500 tokens before that is written.
 * The reader gives bf16 bits as the CUDA backend does (a stamped copy of one block, so every block
 * differs and making rows costs little): the time is the store's. Prints one JSON line per step:
 * seconds, rows read or restored, and the store's own log line (blocks new and reused, MB written).
 *
 *   npm run bench:snapshot [-- --tokens N --dir <folder on the disk to measure>]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { LatentCache } from '../../src/engine/state/latent-cache';
import { RepoStateStore } from '../../src/engine/state/repo-store';
import type { LatentReader, StateShape } from '../../src/engine/state/state-file';
import type { SequenceState } from '../../src/engine/state/types';

const { values } = parseArgs({ options: { tokens: { type: 'string', default: String(2 ** 20) }, dir: { type: 'string' } } });
const N = Number(values.tokens);
const W = 576;
const MLA_LAYERS = 7;
const EDIT = N - 2000;
const RESUMED = EDIT - 500;

const state: SequenceState = {
  length: N,
  layers: [{ kind: 'kda', conv: new Float32Array(1024), S: new Float32Array(4096) }, ...Array.from({ length: MLA_LAYERS }, () => ({ kind: 'mla' as const, cache: new LatentCache(W) }))],
};
const shape: StateShape = { length: N, layers: state.layers.map((l) => (l.kind === 'kda' ? { kind: 'kda', convLength: l.conv.length, stateLength: l.S.length } : { kind: 'mla', width: W })) };

const BLOCK = 4096;
const template = Uint16Array.from({ length: BLOCK * W }, (_, i) => 0x3c00 + ((i * 2654435761) >>> 24));

/** Rows of the context with edit `version`: rows from EDIT on differ between versions. */
function rows(version: number, counter: { rows: number }): LatentReader {
  return (layer, from, count) => {
    counter.rows += count;
    const out = template.slice(0, count * W);
    for (let t = 0; t < count; t++) {
      const row = from + t;
      out[t * W] = row & 0xffff;
      out[t * W + 1] = (row >>> 16) + 16 * layer + (row >= EDIT ? 256 * version : 0);
    }
    return out;
  };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(values.dir ?? tmpdir(), 'klc-snapshot-bench-'));
  let logged = '';
  const store = new RepoStateStore(dir, { modelId: 'bench', packerVersion: 'bench', tokenizerId: 'bench' }, (line) => (logged = line));
  const write = async (what: string, ids: Int32Array, resumed: number, version: number) => {
    const counter = { rows: 0 };
    const read = rows(version, counter);
    const started = performance.now();
    const snapshot = await store.openSnapshot(shape, ids, undefined, 'bf16', resumed);
    await snapshot.putLatent(N, read);
    await snapshot.commit(state, read);
    console.log(JSON.stringify({ what, tokens: N, resumed, seconds: +((performance.now() - started) / 1000).toFixed(3), rowsRead: counter.rows, log: logged }));
  };
  try {
    const ids = Int32Array.from({ length: N }, (_, i) => i % 50_000);
    await write('whole snapshot', ids, 0, 0);
    const started = performance.now();
    let restored = 0;
    const resumed = await store.resume(ids, (_ls, block, count) => {
      if (!(block instanceof Uint16Array)) throw new Error('bench: a bf16 snapshot gave widened rows');
      restored += count;
    });
    if (resumed?.position !== N) throw new Error(`bench: the snapshot restored ${resumed?.position ?? 'nothing'} of ${N} tokens`);
    console.log(JSON.stringify({ what: 'restore whole snapshot', tokens: N, seconds: +((performance.now() - started) / 1000).toFixed(3), rowsRestored: restored }));
    const edited = Int32Array.from(ids);
    edited[EDIT] = -1;
    await write(`after an edit at token ${EDIT}`, edited, RESUMED, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

void main();
