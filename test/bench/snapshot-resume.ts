/**
 * `npm run bench:snapshot`: what saving the repository snapshot costs after an edit near the end,
 * at the 48B model's MLA cache (7 MLA layers, 576 bf16 values = 1152 bytes per row): a snapshot of
 * N tokens is written, then the ids change 2000 tokens before the end and the snapshot of a state
 * resumed 500 tokens before that is written. Rows come from a formula, not a model, so the time is
 * the store's (plus making the rows read). Prints one JSON line per write: seconds, rows read from
 * the latent reader, and the store's own log line (blocks new and reused, MB written).
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

/** Rows of the context with edit `version`: rows from EDIT on differ between versions. */
function rows(version: number, counter: { rows: number }): LatentReader {
  return (layer, from, count) => {
    counter.rows += count;
    const out = new Float32Array(count * W);
    for (let t = 0; t < count; t++) {
      const row = from + t;
      const v = row >= EDIT ? version : 0;
      for (let j = 0; j < W; j++) out[t * W + j] = Math.sin(row * 0.0007 + j * 0.37 + layer + v);
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
    const edited = Int32Array.from(ids);
    edited[EDIT] = -1;
    await write(`after an edit at token ${EDIT}`, edited, RESUMED, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

void main();
