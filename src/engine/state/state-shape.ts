/**
 * Whether a restored state can be the model's state after some tokens: a state file can pass its
 * checksums and still not fit (written by a build with another layout, or assembled from a
 * checkpoint and a snapshot that disagree). Such a state is rebuilt; handed to a backend it would
 * crash it or silently compute nonsense.
 */
import type { SequenceState } from './types';

/** What makes `state` unfit to continue after `position` tokens of the model whose fresh state is `fresh`, or undefined. */
export function stateMismatch(state: SequenceState, fresh: SequenceState, position: number): string | undefined {
  if (state.length !== position) return `it covers ${state.length} tokens where ${position} were expected`;
  if (state.layers.length !== fresh.layers.length) return `it has ${state.layers.length} layers, the model ${fresh.layers.length}`;
  for (let i = 0; i < fresh.layers.length; i++) {
    const want = fresh.layers[i];
    const got = state.layers[i] as SequenceState['layers'][number] | undefined;
    if (!got || got.kind !== want.kind) return `layer ${i} is ${got?.kind ?? 'missing'}, the model's is ${want.kind}`;
    if (got.kind === 'kda' && want.kind === 'kda') {
      if (got.conv.length !== want.conv.length) return `layer ${i} has ${got.conv.length} conv values, the model ${want.conv.length}`;
      if (got.S.length !== want.S.length) return `layer ${i} has ${got.S.length} recurrent-state values, the model ${want.S.length}`;
    } else if (got.kind === 'mla' && want.kind === 'mla') {
      if (got.cache.width !== want.cache.width) return `layer ${i} caches ${got.cache.width} values per token, the model ${want.cache.width}`;
      if (got.cache.length !== position) return `layer ${i} caches ${got.cache.length} tokens where ${position} were expected`;
    }
  }
  return undefined;
}
