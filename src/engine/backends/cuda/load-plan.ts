/**
 * The CUDA backend's memory plan at load time: the GPU-free plan (src/engine/plan) with what the
 * device says (free memory, tensor-core mode, the sampling buffers' exact size) and the weights'
 * exact device bytes under each scheme it may run (none, fp8, int8, int4: what it uploads, quantized
 * weights packed), refusing before any upload with the plan's numbers and advice. When the rest
 * does not fit, the routed experts of the last MoE layers are planned in host memory (computed on
 * the CPU, staged to the GPU for long prefill slices: host-experts.ts).
 */
import { UserError } from '../../../common/errors';
import type { KimiConfig } from '../../model/config';
import { isSliceTokens, largestContext, MAX_CONTEXT_TOKENS, MAX_FORKS, MAX_SLICE_TOKENS, MIN_SLICE_TOKENS, planMemory, type MemoryBudget, type MemoryPlan, type PlannedWeights, type PlanRequest } from '../../plan/memory-plan';
import { QUANTIZATIONS, type Quantization } from '../../../common/quantization';
import { gb } from '../../../common/sizes';

export interface LoadBudget extends MemoryBudget {
  log?: (line: string) => void;
}

export interface DeviceFacts {
  /** Free bytes on the device now. */
  free: number;
  matrixBytes: number;
  tensorCores: boolean;
  sampleScratch: number;
  gpuName: string;
  dir: string;
  /** The schemes this load may run: none, and fp8, int8 and int4 unless the checkpoint is stored quantized. Default CUDA_SCHEMES. */
  schemes?: readonly Quantization[];
  /** The device bytes of the weights under each of `schemes`; without it, the plan's own estimate. */
  weights?: (q: Quantization) => PlannedWeights;
  /**
   * Whether the routed experts are INT4/INT8/FP8 under scheme q: only those may be offloaded (the
   * CPU kernels run quantized experts). Default: q is fp8, int8 or int4.
   */
  quantizedExperts?: (q: Quantization) => boolean;
}

/**
 * What the CUDA backend runs, in the order auto tries them (the plan's QUANTIZATIONS, so that
 * `klc plan` and a load choose alike): unquantized weights, then FP8, INT8 and INT4 weight-only.
 */
export const CUDA_SCHEMES: readonly Quantization[] = QUANTIZATIONS;

/** The plan a load would make, fitting or not, and how it came to be. */
export interface CudaPlan {
  plan: MemoryPlan;
  /** Whether the budget's GPU memory limit is below the free memory. */
  capped: boolean;
  /** Why this context was planned, when the budget named none. */
  contextChoice?: string;
}

/**
 * The plan the CUDA backend loads with: the budget checked, the quantization asked for (auto: the
 * least of `d.schemes` that fits), the GPU memory limit bounded by the free
 * memory, and without a context budget the config's maximum context, or the longest that fits when
 * that does not. "Select Model Folder…" shows it before anything loads; planLoad refuses with it.
 * `d.sampleScratch` may be left out where no device context exists yet (the plan estimates it).
 */
export function cudaPlan(config: KimiConfig, opts: MemoryBudget, d: Omit<DeviceFacts, 'sampleScratch' | 'gpuName'> & { sampleScratch?: number }): CudaPlan {
  const quantization = opts.quantization ?? 'none';
  const schemes = d.schemes ?? CUDA_SCHEMES;
  if (quantization !== 'auto' && !schemes.includes(quantization)) {
    throw new UserError(`${d.dir} is already quantized (its config.json has a quantization_config); quantization at load (${quantization}) needs a bf16 or fp32 checkpoint. Use quantization none or auto.`, d.dir);
  }
  if (opts.contextTokens !== undefined && !(Number.isSafeInteger(opts.contextTokens) && opts.contextTokens >= 1 && opts.contextTokens <= MAX_CONTEXT_TOKENS)) {
    throw new UserError(`the context budget must be 1 to ${MAX_CONTEXT_TOKENS} tokens, got ${opts.contextTokens}.`);
  }
  if (opts.forks !== undefined && !(Number.isSafeInteger(opts.forks) && opts.forks >= 0 && opts.forks <= MAX_FORKS)) {
    throw new UserError(`the number of concurrent forks must be 0 to ${MAX_FORKS}, got ${opts.forks}.`);
  }
  if (opts.sliceTokens !== undefined && !isSliceTokens(opts.sliceTokens)) {
    throw new UserError(`the prefill slice must be ${MIN_SLICE_TOKENS} to ${MAX_SLICE_TOKENS} tokens, got ${opts.sliceTokens}.`);
  }
  if (opts.gpuMemory !== undefined && !(opts.gpuMemory > 0)) throw new UserError(`the GPU memory limit must be a positive number of bytes, got ${opts.gpuMemory}.`);
  const gpuMemory = Math.min(opts.gpuMemory ?? d.free, d.free);
  // Whether a plan under `q` may offload: the plan offloads only under the last scheme it tries.
  const offloadFor = (q: Quantization | 'auto'): boolean => {
    const last = q === 'auto' ? schemes[schemes.length - 1] : q;
    return d.quantizedExperts ? d.quantizedExperts(last) : last !== 'none';
  };
  const request: Omit<PlanRequest, 'contextTokens'> = {
    forks: opts.forks ?? MAX_FORKS,
    quantization,
    schemes,
    ...(d.weights ? { weights: d.weights } : {}),
    gpuMemory,
    sliceTokens: opts.sliceTokens,
    matrixBytes: d.matrixBytes,
    tensorCores: d.tensorCores,
    sampleScratch: d.sampleScratch,
    offload: offloadFor(quantization),
  };
  const configMax = Math.min(config.maxPositionEmbeddings ?? MAX_CONTEXT_TOKENS, MAX_CONTEXT_TOKENS);
  let contextTokens = opts.contextTokens;
  let contextChoice: string | undefined;
  if (contextTokens === undefined) {
    // Under auto, the least quantization the model fits at, with the longest context there: a
    // longer context is no reason to quantize.
    const scheme = quantization === 'auto' ? schemes.find((q) => largestContext(config, { ...request, quantization: q, offload: offloadFor(q) }) > 0) : quantization;
    if (scheme !== undefined) {
      request.quantization = scheme;
      request.offload = offloadFor(scheme);
    }
    const fitting = largestContext(config, request);
    contextTokens = fitting > 0 ? Math.min(configMax, fitting) : configMax;
    if (fitting > 0) {
      const why = contextTokens < configMax ? `the config allows ${configMax}, more does not fit` : 'the config\'s maximum';
      contextChoice = `cuda: planned for a context of ${contextTokens} tokens and ${request.forks} forks (${why})`;
    }
  }
  return { plan: planMemory(config, { ...request, contextTokens }), capped: gpuMemory < d.free, ...(contextChoice ? { contextChoice } : {}) };
}

/**
 * What the plan holds on the GPU, as one clause: "for N tokens and K forks it needs weights … =
 * total", and the offloaded experts' host memory when there are any.
 */
export function planFigures(plan: MemoryPlan): string {
  const g = plan.gpu;
  const host = plan.offloadedLayers.length > 0 ? `, with the routed experts of ${plan.offloadedLayers.length} layers (${gb(plan.host.experts)}) in host memory` : '';
  return `for ${plan.contextTokens} tokens and ${plan.forks} forks it needs weights ${gb(g.weights)} + MLA cache ${gb(g.mlaCache)} + KDA state ${gb(g.kdaState)} + forks ${gb(g.forks)} + workspace for ${plan.sliceTokens}-token slices ${gb(g.workspace)} = ${gb(g.total)}${host}`;
}

/**
 * The memory plan for this load, or a UserError with its numbers and advice before anything is
 * uploaded. The context chosen without a budget is logged.
 */
export function planLoad(config: KimiConfig, opts: LoadBudget, d: DeviceFacts): MemoryPlan {
  const { plan, capped, contextChoice } = cudaPlan(config, opts, d);
  if (contextChoice) (opts.log ?? ((line: string) => void process.stderr.write(`${line}\n`)))(contextChoice);
  if (!plan.fits) {
    const limit = capped ? `the limit of ${gb(plan.gpuMemory)} (kimiLinear.gpuMemoryLimit / --gpu-memory)` : `${gb(d.free)} free on ${d.gpuName}`;
    throw new UserError(`the model does not fit in ${limit}: ${planFigures(plan)}. ${plan.advice}${capped ? '' : ' Other programs on this GPU may hold memory too.'}`, d.dir);
  }
  return plan;
}
