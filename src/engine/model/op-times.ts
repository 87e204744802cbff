/**
 * Where a forward's time goes, by kind of layer op: each backend call is timed between two
 * synchronisations of the device, so the sums are the GPU's time per kind (plus the host's calls
 * between launches) rather than the time to enqueue. A timed pass is slower than a plain one, so
 * the figures say how a forward divides, not how long it takes.
 */
import type { Backend, NormSite } from '../backends/backend';

export type OpKind = 'kda' | 'mla' | 'moe' | 'dense' | 'norms' | 'outside';
export const OP_KINDS: readonly OpKind[] = ['kda', 'mla', 'moe', 'dense', 'norms', 'outside'];

/** The backend calls a forward makes; embedding, the final norm, lm_head and sampling are "outside" the layers. */
const TIMED = ['embed', 'rmsnorm', 'addRmsnorm', 'addInPlace', 'kdaPrefill', 'kdaDecode', 'mlaPrefill', 'mlaDecode', 'moe', 'mlp', 'lmHead', 'sampleRows'] as const;
/** Calls that join two kinds (a norm and the MoE block): hidden while timed, so the model makes the two calls apart. */
const JOINED = ['addNormMoe'] as const;

function kindOf(name: (typeof TIMED)[number], args: unknown[]): OpKind {
  switch (name) {
    case 'kdaPrefill':
    case 'kdaDecode':
      return 'kda';
    case 'mlaPrefill':
    case 'mlaDecode':
      return 'mla';
    case 'moe':
      return 'moe';
    case 'mlp':
      return 'dense';
    case 'addInPlace':
      return 'norms';
    case 'rmsnorm':
      return (args[0] as NormSite).which === 'final' ? 'outside' : 'norms';
    case 'addRmsnorm':
      return (args[2] as NormSite).which === 'final' ? 'outside' : 'norms';
    default:
      return 'outside';
  }
}

export interface OpTimer {
  /** Milliseconds per kind since the last reset, summed over the timed calls. */
  readonly times: Record<OpKind, number>;
  /** Calls are timed only while on. */
  on: boolean;
  reset(): void;
  /** Puts the backend's own methods back. */
  restore(): void;
}

/**
 * Wraps the forward's calls of `backend` (in place) with `sync` on each side, summing their times by
 * kind while the timer is on. Calls that return a promise (onnx) are timed until it settles. Decode
 * steps are not recorded as graphs meanwhile (a replay makes none of the calls, and a recording
 * cannot hold the synchronisations).
 */
export function timeOps(backend: Backend<unknown>, sync: () => void, now: () => number = () => performance.now()): OpTimer {
  const times = Object.fromEntries(OP_KINDS.map((k) => [k, 0])) as Record<OpKind, number>;
  const target = backend as unknown as Record<string, ((...a: unknown[]) => unknown) | undefined>;
  const originals = new Map<string, (...a: unknown[]) => unknown>();
  const timer: OpTimer = {
    times,
    on: false,
    reset: () => {
      for (const k of OP_KINDS) times[k] = 0;
    },
    restore: () => {
      for (const [name, fn] of originals) target[name] = fn;
      originals.clear();
      if (graphsWere !== undefined) backend.setDecodeGraphs?.(graphsWere);
    },
  };
  const graphsWere = backend.setDecodeGraphs?.(false);
  for (const name of JOINED) {
    const own = target[name];
    if (typeof own !== 'function') continue;
    originals.set(name, own);
    target[name] = undefined;
  }
  for (const name of TIMED) {
    const own = target[name];
    if (typeof own !== 'function') continue;
    originals.set(name, own);
    const call = own.bind(backend);
    target[name] = (...args: unknown[]) => {
      if (!timer.on) return call(...args);
      sync();
      const t = now();
      const done = () => {
        sync();
        times[kindOf(name, args)] += now() - t;
      };
      const r = call(...args);
      if (r instanceof Promise) {
        return r.then((v: unknown) => {
          done();
          return v;
        });
      }
      done();
      return r;
    };
  }
  return timer;
}

/** "kda 12.3 ms, mla 4.5 ms, …" for a log line: the kinds that took any time, in OP_KINDS order. */
export function describeOpTimes(times: Record<OpKind, number>, per = 1): string {
  return OP_KINDS.filter((k) => times[k] > 0)
    .map((k) => `${k} ${(times[k] / per).toFixed(times[k] / per < 10 ? 2 : 1)} ms`)
    .join(', ');
}
