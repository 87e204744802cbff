/**
 * Whether a restored state can be the model's state after some tokens: a state file can pass its
 * checksums and still not fit (written by a build with another layout, or assembled from a
 * checkpoint and a snapshot that disagree). Such a state is rebuilt; handed to a backend it would
 * crash it or silently compute nonsense. The sizes are the persisted layout of state/types.ts.
 */
import type { KimiConfig } from '../model/config';
import type { SequenceState } from './types';

/** What makes `state` unfit to continue the model of `config` after `position` tokens, or undefined. */
export function stateMismatch(state: SequenceState, config: KimiConfig, position: number): string | undefined {
  const { kda, mla } = config;
  if (state.length !== position) return `it covers ${state.length} tokens where ${position} were expected`;
  if (state.layers.length !== config.layers.length) return `it has ${state.layers.length} layers, the model ${config.layers.length}`;
  for (let i = 0; i < config.layers.length; i++) {
    const kind = config.layers[i].attention;
    const got = state.layers[i] as SequenceState['layers'][number] | undefined;
    if (!got || got.kind !== kind) return `layer ${i} is ${got?.kind ?? 'missing'}, the model's is ${kind}`;
    if (got.kind === 'kda') {
      const conv = 3 * kda.numHeads * kda.headDim * (kda.convKernel - 1);
      const S = kda.numHeads * kda.headDim * kda.headDim;
      if (got.conv.length !== conv) return `layer ${i} has ${got.conv.length} conv values, the model ${conv}`;
      if (got.S.length !== S) return `layer ${i} has ${got.S.length} recurrent-state values, the model ${S}`;
    } else {
      const width = mla.kvLoraRank + mla.qkRopeHeadDim;
      // Only the width: a device backend may hold the restored rows itself, leaving the host cache empty.
      if (got.cache.width !== width) return `layer ${i} caches ${got.cache.width} values per token, the model ${width}`;
    }
  }
  return undefined;
}
