/**
 * The copy-on-write fork check shared by the device tests: forks of a prefilled state against twins
 * rebuilt from the host arrays (independent device buffers), while the forks and their source go on
 * appending different tokens, then a prompt prefilled into one fork and into its twin.
 */
import type { Model } from '../../src/engine/model/model';
import { LatentCache } from '../../src/engine/state/latent-cache';
import type { SequenceState } from '../../src/engine/state/types';
import { relError } from '../golden/golden-data';

/** A state rebuilt from the neutral arrays only (independent device buffers once imported). */
export function copyNeutral(s: SequenceState): SequenceState {
  return {
    length: s.length,
    layers: s.layers.map((l) => (l.kind === 'kda' ? { kind: 'kda', conv: l.conv.slice(), S: l.S.slice() } : { kind: 'mla', cache: LatentCache.fromArray(l.cache.width, l.cache.toArray()) })),
  };
}

/**
 * The worst relative logit error of two forks of `ids`' state against their twins over 6 decode
 * steps and `prompt`. `inspect` sees the first fork before every state is released.
 */
export async function forksAgainstCopies(gpu: Model, ids: Int32Array, prompt: Int32Array, inspect: (fork: SequenceState) => void = () => {}): Promise<number> {
  const base = gpu.newState();
  await gpu.prefill(base, ids, { logits: 'none', slice: 4096 });
  const forks = [gpu.forkState(base), gpu.forkState(base)];
  gpu.backend.exportState(base);
  const twins = forks.map(() => {
    const t = copyNeutral(base);
    gpu.backend.importState(t);
    return t;
  });
  let worst = 0;
  for (let step = 0; step < 6; step++) {
    await gpu.decode(base, 100 + step);
    for (const [i, f] of forks.entries()) {
      const id = 200 + 31 * i + step;
      worst = Math.max(worst, relError(await gpu.decode(f, id), await gpu.decode(twins[i], id)));
    }
  }
  worst = Math.max(worst, relError(await gpu.prefill(forks[0], prompt), await gpu.prefill(twins[0], prompt)));
  inspect(forks[0]);
  for (const s of [...forks, ...twins, base]) gpu.releaseState(s);
  return worst;
}
