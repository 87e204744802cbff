/**
 * "Will it fit my card?": the GPU memory a Kimi Linear model needs for a context budget and a number
 * of concurrent question forks, under a quantization scheme and a memory cap, with the routed
 * experts of the last MoE layers moved to host memory when the rest does not fit. Pure arithmetic
 * on the config, so `klc plan` answers without a GPU and the CUDA backend refuses before any upload.
 *
 * On the GPU:
 * - weights (./weights.ts);
 * - the repository's MLA latent cache, bf16 in tensor-core mode and fp32 in exact mode (as the CUDA
 *   backend keeps it): mapped in 2 MiB granules, grown in extents of at most 128 MiB, so each MLA
 *   layer holds at most roundUp(rows, 2 MiB) + 128 MiB;
 * - the repository's KDA state (S = H·K·K and conv tails 3·H·K·(W−1) per KDA layer, fp32);
 * - per fork: a copy of the KDA state, the copied boundary granule of each MLA layer, and its private
 *   rows for the question and answer (FORK_RESERVE_TOKENS, in whole granules);
 * - the workspace of one prefill slice (./workspace.ts), the slice the longest of SLICE_CHOICES
 *   that fits; with experts offloaded, also the staging buffer that long prefill slices copy one
 *   offloaded layer's experts into (offloadStagingBytes).
 */
import type { KimiConfig } from '../model/config';
import { gb } from '../../common/sizes';
import { QUANTIZATIONS, type Quantization } from '../../common/quantization';
import { dequantBufferBytes, weightBytes, type WeightBytes } from './weights';
import { prefillWorkspaceBytes } from './workspace';

export type QuantizationChoice = Quantization | 'auto';

export const MAX_CONTEXT_TOKENS = 1_048_576;
export const MAX_FORKS = 8;
/** Bytes of one MLA latent element on the GPU: bf16 in tensor-core mode, fp32 in exact mode. */
export function mlaCacheElementBytes(tensorCores: boolean): number {
  return tensorCores ? 2 : 4;
}
/** The MLA cache is mapped in granules of this size (the CUDA virtual memory granularity). */
export const CACHE_GRANULE = 2 ** 21;
/** The largest extent the MLA cache grows by at once. */
export const CACHE_GROWTH_EXTENT = 2 ** 27;
/** Tokens reserved for each fork's question and answer. */
export const FORK_RESERVE_TOKENS = 4096;
/**
 * Prefill slices tried from the longest: 4096 tokens fill an H100's tensor cores at the real widths, and
 * 8192 ingest 7% faster at 128k and 15% at 1M on an H100 (each slice re-reads the whole cached prefix
 * once per MLA layer and every expert's weights once) for 3.9 GB more workspace, taken where it fits.
 */
export const SLICE_CHOICES: readonly number[] = [8192, 4096, 2048, 1024, 512];
/**
 * The prefill slices a user may ask for (--prefill-slice). 16,384 is the longest run on a GPU so far
 * (test/gpu/results/round-h100-2026-12-07h); the workspace plan holds up to the maximum.
 */
export const MIN_SLICE_TOKENS = 64;
export const MAX_SLICE_TOKENS = 65_536;

/** Whether a user may ask for `n` tokens per prefill call. */
export function isSliceTokens(n: number): boolean {
  return Number.isSafeInteger(n) && n >= MIN_SLICE_TOKENS && n <= MAX_SLICE_TOKENS;
}
/**
 * The shortest slice worth offloading another layer's experts for: every slice copies all routed
 * experts of each offloaded layer to the GPU (and reads every resident expert's codes at least
 * once) however few tokens it has, so at 512 tokens that cost per token is twice 1024's. On an H100
 * at 128k under a 32 GB cap, 3 layers offloaded at 512-token slices prefilled 1,233 tok/s against
 * 1,901 with 7 at 1024 (test/gpu/results/round-h100-2026-12-06e, when experts were still dequantized
 * for every slice).
 */
export const MIN_OFFLOAD_SLICE = 1024;
/**
 * The share of the cap the plan may fill: the CUDA context, cuBLAS's own workspaces and
 * fragmentation take the rest.
 */
export const USABLE_FRACTION = 0.95;

const F32 = 4;

/** What a user asks the plan for; every field has a default where the plan is used. */
export interface MemoryBudget {
  /** Context budget in tokens, up to MAX_CONTEXT_TOKENS. */
  contextTokens?: number;
  /** Questions answered at once, each on a fork of the repository state (0 to MAX_FORKS). */
  forks?: number;
  /** Bytes of GPU memory the plan may use. */
  gpuMemory?: number;
  quantization?: QuantizationChoice;
  /**
   * Tokens per prefill call (the ingest's slice, as vLLM's max-num-batched-tokens): the workspace is
   * planned for it. Default: the longest of SLICE_CHOICES that fits.
   */
  sliceTokens?: number;
}

export interface PlanRequest {
  contextTokens: number;
  forks: number;
  quantization: QuantizationChoice;
  /** Bytes of GPU memory the plan may use (the card's size, or less to leave room for others). */
  gpuMemory: number;
  /** A fixed prefill slice instead of the longest of SLICE_CHOICES that fits. */
  sliceTokens?: number;
  /** Bytes per unquantized matrix weight: 2 for bf16 checkpoints, 4 for fp32 ones. Default 2. */
  matrixBytes?: number;
  /** Whether tensor-core mode (and its staging) is planned. Default true, the CUDA default for bf16. */
  tensorCores?: boolean;
  /** The device sampling buffers' exact size when a GPU is at hand (see sampleScratchBytes). */
  sampleScratch?: number;
  /**
   * Whether routed experts may move to host memory. Default: when they are FP8/INT8/INT4 (fp8,
   * int8, int4), the formats the CPU kernels run; a backend that knows better (a checkpoint stored
   * with quantized experts) says true.
   */
  offload?: boolean;
  /** The schemes `auto` tries, in order. Default QUANTIZATIONS (a backend may run fewer). */
  schemes?: readonly Quantization[];
  /**
   * The weights' device bytes under each scheme where a backend knows them exactly (the CUDA
   * backend counts what it uploads), and the buffer quantized weights are dequantized into for
   * prefill (counted in the workspace). Default weightBytes() and dequantBufferBytes() from the config.
   */
  weights?: (q: Quantization) => PlannedWeights;
}

export interface PlannedWeights {
  bytes: WeightBytes;
  /** Bytes of the prefill dequantization buffer. */
  dense: number;
}

export interface GpuBytes {
  weights: number;
  mlaCache: number;
  kdaState: number;
  forks: number;
  workspace: number;
  total: number;
}

export interface MemoryPlan {
  fits: boolean;
  quantization: Quantization;
  contextTokens: number;
  forks: number;
  sliceTokens: number;
  /** The cap asked for, and the part of it the plan may fill (USABLE_FRACTION). */
  gpuMemory: number;
  usable: number;
  gpu: GpuBytes;
  host: { experts: number };
  /** Layers (0-based) whose routed experts live in host memory. */
  offloadedLayers: number[];
  advice: string;
}

/**
 * The device buffer a prefill slice copies an offloaded layer's routed experts into, to run them on
 * the GPU (few tokens run them on the CPU instead): the largest offloaded layer's experts.
 */
export function offloadStagingBytes(w: WeightBytes, offloadedLayers: readonly number[]): number {
  return offloadedLayers.reduce((m, i) => Math.max(m, w.experts[i]), 0);
}

function roundUp(bytes: number, to: number): number {
  return Math.ceil(bytes / to) * to;
}

/** Bytes of one sequence's KDA state: S and the conv tails of every KDA layer, fp32. */
export function kdaStateBytes(c: KimiConfig): number {
  const { numHeads: H, headDim: K, convKernel: W } = c.kda;
  const kdaLayers = c.layers.filter((l) => l.attention === 'kda').length;
  return kdaLayers * (H * K * K + 3 * H * K * (W - 1)) * F32;
}

function mlaRowBytes(c: KimiConfig, elementBytes: number): number {
  return (c.mla.kvLoraRank + c.mla.qkRopeHeadDim) * elementBytes;
}

function mlaLayers(c: KimiConfig): number {
  return c.layers.filter((l) => l.attention === 'mla').length;
}

/** The most the repository's MLA cache holds for `tokens` tokens of `elementBytes` per latent value. */
export function mlaCacheBytes(c: KimiConfig, tokens: number, elementBytes: number): number {
  return mlaLayers(c) * (roundUp(tokens * mlaRowBytes(c, elementBytes), CACHE_GRANULE) + CACHE_GROWTH_EXTENT);
}

/** What one fork adds: its KDA state, the copied boundary granule and its private rows per MLA layer. */
export function forkBytes(c: KimiConfig, elementBytes: number): number {
  return kdaStateBytes(c) + mlaLayers(c) * (CACHE_GRANULE + roundUp(FORK_RESERVE_TOKENS * mlaRowBytes(c, elementBytes), CACHE_GRANULE));
}

interface Candidate {
  quantization: Quantization;
  offload: number;
  slice: number;
}

/** The plan's arithmetic for one request, with the weights of each scheme computed once. */
class Planner {
  private readonly weights = new Map<Quantization, PlannedWeights>();
  private readonly moeLayers: number[];

  constructor(
    private readonly c: KimiConfig,
    private readonly req: PlanRequest,
  ) {
    this.moeLayers = c.layers.flatMap((l, i) => (l.ffn === 'moe' ? [i] : []));
  }

  private weightsOf(q: Quantization): PlannedWeights {
    let w = this.weights.get(q);
    if (!w) {
      w = this.req.weights?.(q) ?? { bytes: weightBytes(this.c, q, this.req.matrixBytes ?? 2), dense: dequantBufferBytes(this.c, q, this.req.tensorCores ?? true) };
      this.weights.set(q, w);
    }
    return w;
  }

  private usable(): number {
    return this.req.gpuMemory * USABLE_FRACTION;
  }

  /** The layers whose experts go to the host when `n` are offloaded: the last MoE layers. */
  private offloaded(n: number): number[] {
    return n === 0 ? [] : this.moeLayers.slice(-n);
  }

  layout(k: Candidate, contextTokens = this.req.contextTokens, forks = this.req.forks): Omit<MemoryPlan, 'advice'> {
    const { c, req } = this;
    const { bytes: w, dense } = this.weightsOf(k.quantization);
    const offloadedLayers = this.offloaded(k.offload);
    const host = offloadedLayers.reduce((s, i) => s + w.experts[i], 0);
    const weights = w.resident + w.experts.reduce((s, b) => s + b, 0) - host;
    const tensorCores = req.tensorCores ?? true;
    const element = mlaCacheElementBytes(tensorCores);
    const mlaCache = mlaCacheBytes(c, contextTokens, element);
    const kdaState = kdaStateBytes(c);
    const forkTotal = forks * forkBytes(c, element);
    const workspace = prefillWorkspaceBytes(c, k.slice, tensorCores, req.sampleScratch) + dense + offloadStagingBytes(w, offloadedLayers);
    const total = weights + mlaCache + kdaState + forkTotal + workspace;
    const usable = this.usable();
    return {
      fits: total <= usable,
      quantization: k.quantization,
      contextTokens,
      forks,
      sliceTokens: k.slice,
      gpuMemory: req.gpuMemory,
      usable,
      gpu: { weights, mlaCache, kdaState, forks: forkTotal, workspace, total },
      host: { experts: host },
      offloadedLayers,
    };
  }

  /**
   * Candidates from the most to the least wanted: unquantized before quantized (auto goes none →
   * fp8 → int8 → int4, offloading only at int4), no offload before offload, long slices first;
   * where layers may be offloaded, slices shorter than MIN_OFFLOAD_SLICE only after every offload
   * count at longer ones.
   */
  candidates(choice: QuantizationChoice): Candidate[] {
    const schemes = choice === 'auto' ? (this.req.schemes ?? QUANTIZATIONS) : [choice];
    const slices = this.req.sliceTokens ? [this.req.sliceTokens] : SLICE_CHOICES;
    const out: Candidate[] = [];
    for (const [i, quantization] of schemes.entries()) {
      const offload = this.req.offload ?? quantization !== 'none';
      const maxOffload = i === schemes.length - 1 && offload ? this.moeLayers.length : 0;
      const first = maxOffload > 0 ? slices.filter((s) => s >= MIN_OFFLOAD_SLICE) : slices;
      const last = slices.filter((s) => !first.includes(s));
      for (const group of [first, last]) {
        for (let offload = 0; offload <= maxOffload; offload++) for (const slice of group) out.push({ quantization, offload, slice });
      }
    }
    return out;
  }

  /** The first candidate that fits, or the last (the smallest) when none does. */
  best(choice: QuantizationChoice, contextTokens = this.req.contextTokens, forks = this.req.forks): Omit<MemoryPlan, 'advice'> {
    const all = this.candidates(choice);
    for (const k of all) {
      const p = this.layout(k, contextTokens, forks);
      if (p.fits) return p;
    }
    return this.layout(all[all.length - 1], contextTokens, forks);
  }

  /** The longest context that fits under `choice` (0 when none does), in whole 1024-token steps above 1024. */
  largestContext(choice: QuantizationChoice, forks = this.req.forks): number {
    if (!this.best(choice, 1, forks).fits) return 0;
    let lo = 1;
    let hi = MAX_CONTEXT_TOKENS;
    if (this.best(choice, hi, forks).fits) return hi;
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if (this.best(choice, mid, forks).fits) lo = mid;
      else hi = mid;
    }
    return lo >= 1024 ? lo - (lo % 1024) : lo;
  }

  advice(plan: Omit<MemoryPlan, 'advice'>): string {
    const { req } = this;
    const needs = (total: number) => gb(roundUp(total / USABLE_FRACTION, 1e7));
    if (plan.fits) {
      const spare = `${gb(plan.gpu.total)} of ${gb(plan.usable)} usable (${gb(plan.usable - plan.gpu.total)} spare)`;
      if (plan.offloadedLayers.length > 0) {
        const resident = this.layout({ quantization: plan.quantization, offload: 0, slice: SLICE_CHOICES[SLICE_CHOICES.length - 1] });
        return `fits: ${spare}, with the routed experts of layers ${span(plan.offloadedLayers)} (${gb(plan.host.experts)}) in host memory, computed on the CPU; a GPU with at least ${needs(resident.gpu.total)} keeps every expert on the GPU at ${plan.quantization}.`;
      }
      if (req.quantization === 'auto' && plan.quantization !== 'none') {
        const bf16 = this.layout({ quantization: 'none', offload: 0, slice: SLICE_CHOICES[SLICE_CHOICES.length - 1] });
        return `fits at ${plan.quantization}: ${spare}; unquantized weights need a GPU with at least ${needs(bf16.gpu.total)}.`;
      }
      return `fits: ${spare}.`;
    }
    const options: string[] = [];
    const tokens = this.largestContext(plan.quantization);
    if (tokens > 0) options.push(`fewer tokens: at most ${tokens} fit at ${plan.quantization} (--context ${tokens})`);
    if (req.quantization !== 'auto') {
      const schemes = req.schemes ?? QUANTIZATIONS;
      for (const q of schemes.slice(schemes.indexOf(req.quantization) + 1)) {
        const p = this.best(q);
        if (p.fits) {
          options.push(`a quantized model: --quantization ${q} needs ${gb(p.gpu.total)}${p.offloadedLayers.length > 0 ? ` with the experts of ${p.offloadedLayers.length} layers in host memory` : ''}`);
          break;
        }
      }
    }
    for (let k = req.forks - 1; k >= 0; k--) {
      if (this.best(plan.quantization, req.contextTokens, k).fits) {
        options.push(`fewer forks: --forks ${k}`);
        break;
      }
    }
    options.push(`a bigger GPU: at least ${needs(plan.gpu.total)}`);
    return `does not fit: needs ${gb(plan.gpu.total)} at ${plan.quantization}, but ${gb(plan.usable)} of ${gb(plan.gpuMemory)} is usable. Change one of: ${options.join('; ')}.`;
  }
}

/** "3, 7–9": consecutive layers joined. */
function span(layers: number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < layers.length; ) {
    let j = i;
    while (j + 1 < layers.length && layers[j + 1] === layers[j] + 1) j++;
    parts.push(j > i ? `${layers[i]}–${layers[j]}` : `${layers[i]}`);
    i = j + 1;
  }
  return parts.join(', ');
}

function checkRequest(req: PlanRequest): void {
  const bad = (what: string) => {
    throw new RangeError(what);
  };
  if (!Number.isSafeInteger(req.contextTokens) || req.contextTokens < 1 || req.contextTokens > MAX_CONTEXT_TOKENS) bad(`context must be 1 to ${MAX_CONTEXT_TOKENS} tokens, got ${req.contextTokens}`);
  if (!Number.isSafeInteger(req.forks) || req.forks < 0 || req.forks > MAX_FORKS) bad(`forks must be 0 to ${MAX_FORKS}, got ${req.forks}`);
  if (!(req.gpuMemory > 0)) bad(`the GPU memory cap must be positive, got ${req.gpuMemory}`);
  if (req.sliceTokens !== undefined && !(Number.isSafeInteger(req.sliceTokens) && req.sliceTokens >= 1)) bad(`the slice must be a positive integer, got ${req.sliceTokens}`);
}

/** The plan for `req`: the first arrangement that fits (see Planner.candidates), or why none does. */
export function planMemory(c: KimiConfig, req: PlanRequest): MemoryPlan {
  checkRequest(req);
  const planner = new Planner(c, req);
  const plan = planner.best(req.quantization);
  return { ...plan, advice: planner.advice(plan) };
}

/** The longest context (≤ MAX_CONTEXT_TOKENS) that fits `req` apart from its context; 0 if none does. */
export function largestContext(c: KimiConfig, req: Omit<PlanRequest, 'contextTokens'>): number {
  const full = { ...req, contextTokens: MAX_CONTEXT_TOKENS };
  checkRequest(full);
  return new Planner(c, full).largestContext(req.quantization);
}
