/**
 * The CUDA backend's memory plan at load time: the GPU-free plan (src/engine/plan) with what the
 * device says (free memory, tensor-core mode, the sampling buffers' exact size) and the weights'
 * exact device bytes under each scheme it may run (none, int8, int4: what it uploads, quantized
 * weights packed), refusing before any upload with the plan's numbers and advice. It does not
 * offload experts yet (issue 11), so every weight is planned on the GPU.
 */
import { UserError } from '../../../common/errors';
import type { KimiConfig } from '../../model/config';
import { largestContext, MAX_CONTEXT_TOKENS, MAX_FORKS, planMemory, type MemoryBudget, type MemoryPlan, type PlannedWeights, type PlanRequest } from '../../plan/memory-plan';
import type { Quantization } from '../../plan/weights';
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
  /** The schemes this load may run: none, and int8 and int4 unless the checkpoint is stored quantized. */
  schemes: readonly Quantization[];
  /** The device bytes of the weights under each of `schemes`. */
  weights: (q: Quantization) => PlannedWeights;
}

/**
 * The memory plan for this load, or a UserError with its numbers and advice before anything is
 * uploaded. Without a context budget, the config's maximum context is planned, or the longest that
 * fits when that does not; the choice is logged.
 */
export function planLoad(config: KimiConfig, opts: LoadBudget, d: DeviceFacts): MemoryPlan {
  const quantization = opts.quantization ?? 'none';
  if (quantization === 'fp8') {
    throw new UserError('the CUDA backend does not quantize to fp8 at load (it runs INT4 and INT8 weights); use --quantization int8 or int4 (kimiLinear.quantization), or the reference or onnx backend for fp8.', d.dir);
  }
  if (quantization !== 'auto' && !d.schemes.includes(quantization)) {
    throw new UserError(`${d.dir} is already quantized (its config.json has a quantization_config); quantization at load (${quantization}) needs a bf16 or fp32 checkpoint. Use quantization none or auto.`, d.dir);
  }
  if (opts.contextTokens !== undefined && !(Number.isSafeInteger(opts.contextTokens) && opts.contextTokens >= 1 && opts.contextTokens <= MAX_CONTEXT_TOKENS)) {
    throw new UserError(`the context budget must be 1 to ${MAX_CONTEXT_TOKENS} tokens, got ${opts.contextTokens}.`);
  }
  if (opts.forks !== undefined && !(Number.isSafeInteger(opts.forks) && opts.forks >= 0 && opts.forks <= MAX_FORKS)) {
    throw new UserError(`the number of concurrent forks must be 0 to ${MAX_FORKS}, got ${opts.forks}.`);
  }
  if (opts.gpuMemory !== undefined && !(opts.gpuMemory > 0)) throw new UserError(`the GPU memory limit must be a positive number of bytes, got ${opts.gpuMemory}.`);
  const gpuMemory = Math.min(opts.gpuMemory ?? d.free, d.free);
  const capped = gpuMemory < d.free;
  const request: Omit<PlanRequest, 'contextTokens'> = {
    forks: opts.forks ?? MAX_FORKS,
    quantization,
    schemes: d.schemes,
    weights: d.weights,
    gpuMemory,
    sliceTokens: opts.sliceTokens,
    matrixBytes: d.matrixBytes,
    tensorCores: d.tensorCores,
    sampleScratch: d.sampleScratch,
    offload: false,
  };
  const configMax = Math.min(config.maxPositionEmbeddings ?? MAX_CONTEXT_TOKENS, MAX_CONTEXT_TOKENS);
  let contextTokens = opts.contextTokens;
  if (contextTokens === undefined) {
    // Under auto, the least quantization the model fits at, with the longest context there: a
    // longer context is no reason to quantize.
    const scheme = quantization === 'auto' ? d.schemes.find((q) => largestContext(config, { ...request, quantization: q }) > 0) : quantization;
    if (scheme !== undefined) request.quantization = scheme;
    const fitting = largestContext(config, request);
    contextTokens = fitting > 0 ? Math.min(configMax, fitting) : configMax;
    if (fitting > 0) {
      const why = contextTokens < configMax ? `the config allows ${configMax}, more does not fit` : 'the config\'s maximum';
      (opts.log ?? ((line: string) => void process.stderr.write(`${line}\n`)))(`cuda: planned for a context of ${contextTokens} tokens and ${request.forks} forks (${why})`);
    }
  }
  const plan = planMemory(config, { ...request, contextTokens });
  if (!plan.fits) {
    const g = plan.gpu;
    const limit = capped ? `the limit of ${gb(gpuMemory)} (kimiLinear.gpuMemoryLimit / --gpu-memory)` : `${gb(d.free)} free on ${d.gpuName}`;
    throw new UserError(
      `the model does not fit in ${limit}: for ${contextTokens} tokens and ${plan.forks} forks it needs weights ${gb(g.weights)} + MLA cache ${gb(g.mlaCache)} + KDA state ${gb(g.kdaState)} + forks ${gb(g.forks)} + workspace for ${plan.sliceTokens}-token slices ${gb(g.workspace)} = ${gb(g.total)}. ${plan.advice}${capped ? '' : ' Other programs on this GPU may hold memory too.'}`,
      d.dir,
    );
  }
  return plan;
}

