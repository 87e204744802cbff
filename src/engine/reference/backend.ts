/**
 * The reference backend: pure TypeScript, fp32 values with fp64 sums, computing directly on the
 * neutral sequence state. It is the executable spec the other backends are checked against.
 */
import { totalmem } from 'node:os';
import { UserError } from '../../common/errors';
import type { Backend, Capture, NormSite } from '../backends/backend';
import type { KimiConfig } from '../model/config';
import type { WeightSource } from '../model/weight-source';
import type { KdaLayerState, MlaLayerState } from '../state/types';
import { kdaLayer } from './kda';
import { linear } from './linalg';
import { mlaDecode, mlaPrefill } from './mla';
import { moe, route, swiglu } from './moe';
import { rmsnormRows } from './norms';
import { loadWeights, type LayerWeights, type ModelWeights } from './weights';

/** Row-major activations [T, hidden]. */
export interface Rows {
  data: Float32Array;
  T: number;
}

export class ReferenceBackend implements Backend<Rows> {
  readonly name = 'reference';
  readonly device = 'CPU (pure TypeScript reference)';

  private constructor(
    readonly config: KimiConfig,
    private readonly w: ModelWeights,
  ) {}

  static async load(config: KimiConfig, checkpoint: WeightSource): Promise<ReferenceBackend> {
    const need = checkpoint.parameters * 4;
    const have = totalmem();
    if (need > have * 0.8) {
      const gb = (b: number) => (b / 1e9).toFixed(1);
      throw new UserError(
        `the reference backend keeps every weight of ${checkpoint.dir} in fp32 memory: ${gb(need)} GB, but this machine has ${gb(have)} GB. Use --backend cuda (or auto) for a checkpoint this large.`,
        checkpoint.dir,
      );
    }
    return new ReferenceBackend(config, await loadWeights(config, checkpoint));
  }

  embed(ids: Int32Array): Rows {
    const d = this.config.hiddenSize;
    const V = this.config.vocabSize;
    const out = new Float32Array(ids.length * d);
    ids.forEach((id, t) => {
      if (!Number.isInteger(id) || id < 0 || id >= V) {
        throw new UserError(`token id ${id} at position ${t} is outside the model's vocabulary [0, ${V}); the input ids do not belong to this model.`);
      }
      out.set(this.w.embed.subarray(id * d, (id + 1) * d), t * d);
    });
    return { data: out, T: ids.length };
  }

  rows(x: Rows): number {
    return x.T;
  }

  toHost(x: Rows): Float32Array {
    return x.data.slice();
  }

  addInPlace(h: Rows, x: Rows): void {
    const a = h.data;
    const b = x.data;
    if (a.length !== b.length) throw new Error(`addInPlace: ${a.length} vs ${b.length} values`);
    for (let i = 0; i < a.length; i++) a[i] += b[i];
  }

  rmsnorm(site: NormSite, x: Rows): Rows {
    const weight = site.which === 'final' ? this.w.finalNorm : site.which === 'input' ? this.layer(site.layer).inputNorm : this.layer(site.layer).postNorm;
    return { data: rmsnormRows(x.data, x.T, this.config.hiddenSize, weight, this.config.rmsNormEps), T: x.T };
  }

  kdaPrefill(layer: number, x: Rows, state: KdaLayerState, chunk: number): Rows {
    return { data: kdaLayer(this.config, this.kdaWeights(layer), x.data, x.T, state, { kind: 'chunked', chunk }), T: x.T };
  }

  kdaDecode(layer: number, x: Rows, states: readonly KdaLayerState[]): Rows {
    const w = this.kdaWeights(layer);
    return this.perSequence(x, states, (row, state) => kdaLayer(this.config, w, row, 1, state, { kind: 'recurrent' }));
  }

  mlaPrefill(layer: number, x: Rows, state: MlaLayerState): Rows {
    return { data: mlaPrefill(this.config, this.mlaWeights(layer), x.data, x.T, state.cache), T: x.T };
  }

  mlaDecode(layer: number, x: Rows, states: readonly MlaLayerState[]): Rows {
    const w = this.mlaWeights(layer);
    return this.perSequence(x, states, (row, state) => mlaDecode(this.config, w, row, state.cache));
  }

  /** A decode step of a batch, one sequence after another: row i of x belongs to states[i]. */
  private perSequence<S>(x: Rows, states: readonly S[], step: (row: Float32Array, state: S) => Float32Array): Rows {
    if (states.length !== x.T) throw new Error(`decode: ${x.T} rows but ${states.length} sequence states`);
    const d = this.config.hiddenSize;
    const out = new Float32Array(x.T * d);
    states.forEach((state, i) => out.set(step(x.data.subarray(i * d, (i + 1) * d), state), i * d));
    return { data: out, T: x.T };
  }

  moe(layer: number, x: Rows, capture?: Capture): Rows {
    const w = this.layer(layer).moe;
    if (!w) throw new Error(`layer ${layer} has no MoE block`);
    const d = this.config.hiddenSize;
    const routing = route(this.config.moe, w, x.data, x.T, d);
    if (capture) {
      capture(`router_logits.${layer}`, routing.logits);
      capture(`router_idx.${layer}`, Float32Array.from(routing.idx));
      capture(`router_w.${layer}`, routing.weight);
    }
    return { data: moe(this.config.moe, w, x.data, x.T, d, routing), T: x.T };
  }

  mlp(layer: number, x: Rows): Rows {
    const w = this.layer(layer).mlp;
    if (!w) throw new Error(`layer ${layer} has no dense MLP`);
    return { data: swiglu(w, x.data, x.T, this.config.hiddenSize), T: x.T };
  }

  lmHead(x: Rows, rows: 'all' | 'last'): Float32Array {
    const d = this.config.hiddenSize;
    const V = this.config.vocabSize;
    if (rows === 'last') return linear(x.data.subarray((x.T - 1) * d, x.T * d), 1, this.w.lmHead, V, d);
    return linear(x.data, x.T, this.w.lmHead, V, d);
  }

  // The reference computes on the neutral state itself: there is no separate copy to sync.
  importState(): void {}
  exportState(): void {}

  async dispose(): Promise<void> {}

  private layer(i: number): LayerWeights {
    const l = this.w.layers[i];
    if (!l) throw new Error(`no layer ${i}`);
    return l;
  }

  private kdaWeights(i: number) {
    const w = this.layer(i).kda;
    if (!w) throw new Error(`layer ${i} is not a KDA layer`);
    return w;
  }

  private mlaWeights(i: number) {
    const w = this.layer(i).mla;
    if (!w) throw new Error(`layer ${i} is not an MLA layer`);
    return w;
  }
}
