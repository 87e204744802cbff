/**
 * The CUDA backend's memory plan at load time: the GPU-free plan (src/engine/plan) with what the
 * device says (free memory, tensor-core mode, the sampling buffers' exact size), refusing before
 * any upload with the plan's numbers and advice. This backend neither quantizes nor offloads
 * experts yet (issue 11), so it plans bf16 (or fp32) weights all on the GPU.
 */
import { UserError } from '../../../common/errors';
import type { KimiConfig } from '../../model/config';
import { largestContext, MAX_CONTEXT_TOKENS, MAX_FORKS, planMemory, type MemoryBudget, type MemoryPlan } from '../../plan/memory-plan';
import { gb } from '../../plan/sizes';

export interface LoadBudget extends MemoryBudget {
  sliceTokens?: number;
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
}

/** The plan a load would make, fitting or not, and how it came to be. */
export interface CudaPlan {
  plan: MemoryPlan;
  /** Whether the budget's GPU memory limit is below the free memory. */
  capped: boolean;
  /** Why this context was planned, when the budget named none. */
  contextChoice?: string;
}

/**
 * The plan the CUDA backend loads with: the budget checked, quantization none (this backend
 * uploads every checkpoint's weights unquantized so far), the GPU memory limit bounded by the free
 * memory, and without a context budget the config's maximum context, or the longest that fits when
 * that does not. "Select Model Folder…" shows it before anything loads; planLoad refuses with it.
 * `d.sampleScratch` may be left out where no device context exists yet (the plan estimates it).
 */
export function cudaPlan(config: KimiConfig, opts: MemoryBudget & { sliceTokens?: number }, d: Omit<DeviceFacts, 'sampleScratch' | 'gpuName'> & { sampleScratch?: number }): CudaPlan {
  const quantization = opts.quantization ?? 'none';
  if (quantization !== 'none' && quantization !== 'auto') {
    throw new UserError(`the CUDA backend does not run ${quantization} weights yet (issue 11); load the bf16 checkpoint with quantization none, or use --backend reference.`, d.dir);
  }
  if (opts.contextTokens !== undefined && !(Number.isSafeInteger(opts.contextTokens) && opts.contextTokens >= 1 && opts.contextTokens <= MAX_CONTEXT_TOKENS)) {
    throw new UserError(`the context budget must be 1 to ${MAX_CONTEXT_TOKENS} tokens, got ${opts.contextTokens}.`);
  }
  if (opts.forks !== undefined && !(Number.isSafeInteger(opts.forks) && opts.forks >= 0 && opts.forks <= MAX_FORKS)) {
    throw new UserError(`the number of concurrent forks must be 0 to ${MAX_FORKS}, got ${opts.forks}.`);
  }
  if (opts.gpuMemory !== undefined && !(opts.gpuMemory > 0)) throw new UserError(`the GPU memory limit must be a positive number of bytes, got ${opts.gpuMemory}.`);
  const gpuMemory = Math.min(opts.gpuMemory ?? d.free, d.free);
  const request = {
    forks: opts.forks ?? MAX_FORKS,
    quantization: 'none' as const,
    gpuMemory,
    sliceTokens: opts.sliceTokens,
    matrixBytes: d.matrixBytes,
    tensorCores: d.tensorCores,
    sampleScratch: d.sampleScratch,
    offload: false,
  };
  const configMax = Math.min(config.maxPositionEmbeddings ?? MAX_CONTEXT_TOKENS, MAX_CONTEXT_TOKENS);
  let contextTokens = opts.contextTokens;
  let contextChoice: string | undefined;
  if (contextTokens === undefined) {
    const fitting = largestContext(config, request);
    contextTokens = fitting > 0 ? Math.min(configMax, fitting) : configMax;
    if (fitting > 0) {
      const why = contextTokens < configMax ? `the config allows ${configMax}, more does not fit` : 'the config\'s maximum';
      contextChoice = `cuda: planned for a context of ${contextTokens} tokens and ${request.forks} forks (${why})`;
    }
  }
  return { plan: planMemory(config, { ...request, contextTokens }), capped: gpuMemory < d.free, ...(contextChoice ? { contextChoice } : {}) };
}

/** What the plan holds on the GPU, as one clause: "for N tokens and K forks it needs weights … = total". */
export function planFigures(plan: MemoryPlan): string {
  const g = plan.gpu;
  return `for ${plan.contextTokens} tokens and ${plan.forks} forks it needs weights ${gb(g.weights)} + MLA cache ${gb(g.mlaCache)} + KDA state ${gb(g.kdaState)} + forks ${gb(g.forks)} + workspace for ${plan.sliceTokens}-token slices ${gb(g.workspace)} = ${gb(g.total)}`;
}

/** The plan's advice, with what this backend cannot do yet where the plan suggests it. */
export function cudaAdvice(plan: MemoryPlan): string {
  return `${plan.advice}${plan.advice.includes('--quantization') ? ' The CUDA backend runs unquantized weights only so far (issue 11).' : ''}`;
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
    throw new UserError(`the model does not fit in ${limit}: ${planFigures(plan)}. ${cudaAdvice(plan)}${capped ? '' : ' Other programs on this GPU may hold memory too.'}`, d.dir);
  }
  return plan;
}
