/**
 * What "Select Model Folder…" shows before anything loads: the folder check, the GPUs the CUDA
 * library sees (or why it sees none), and the memory plan on the first one. Run by the engine
 * bundle in a process of its own (`engine-host.js --inspect-model DIR`), because loading the
 * native library has no place in the extension host.
 */
import { loadCudaBackend } from '../backends/cuda/loader';
import { checkModelFolder, type FolderCheck } from '../model/folder-check';
import { MAX_CONTEXT_TOKENS, MAX_FORKS, planMemory, type MemoryBudget } from '../plan/memory-plan';
import { gb } from '../plan/sizes';
import type { Quantization } from '../plan/weights';

export interface GpuDevice {
  name: string;
  totalBytes: number;
  freeBytes: number;
  /** e.g. "9.0" */
  computeCapability: string;
}

export interface GpuReport {
  devices: GpuDevice[];
  /** Why the CUDA backend cannot run here (no library, no driver, no device), when it cannot. */
  unavailable?: string;
}

export interface FitReport {
  /** undefined where nothing can be said (no GPU, or the folder has problems). */
  fits?: boolean;
  /** The plan's figures, one line each. */
  lines: string[];
  /** What to change when it does not fit. */
  advice?: string;
}

export interface ModelInspection {
  check: FolderCheck;
  gpu: GpuReport;
  fit: FitReport;
}

export function detectGpus(): GpuReport {
  const cuda = loadCudaBackend();
  if (!cuda.ok) return { devices: [], unavailable: cuda.reason };
  return {
    devices: cuda.devices.map((d) => ({ name: d.name, totalBytes: d.totalBytes, freeBytes: d.freeBytes, computeCapability: `${d.major}.${d.minor}` })),
  };
}

/** The plan's scheme for the weights the folder holds (bf16/fp32 checkpoints are planned as stored). */
function quantizationOf(label: string | undefined): Quantization {
  return ({ FP8: 'fp8', INT8: 'int8', INT4: 'int4' } as Record<string, Quantization>)[label ?? ''] ?? 'none';
}

/**
 * The memory plan (src/engine/plan) for this folder on the first GPU, with the budget the engine
 * will load it with (kimiLinear.maxContextTokens, kimiLinear.gpuMemoryLimit) and the most forks,
 * as the CUDA backend plans at load.
 */
export function fitOnGpu(check: FolderCheck, gpu: GpuReport, budget: MemoryBudget = {}): FitReport {
  const device = gpu.devices[0];
  const config = check.config;
  if (!device || !config || check.problems.length > 0) return { lines: [] };
  const gpuMemory = Math.min(budget.gpuMemory ?? device.freeBytes, device.freeBytes);
  const configMax = Math.min(config.maxPositionEmbeddings ?? MAX_CONTEXT_TOKENS, MAX_CONTEXT_TOKENS);
  const contextTokens = Math.min(budget.contextTokens ?? configMax, configMax);
  const plan = planMemory(config, {
    contextTokens,
    forks: budget.forks ?? MAX_FORKS,
    quantization: quantizationOf(check.format?.label),
    gpuMemory,
    matrixBytes: check.format?.label === 'fp32' ? 4 : 2,
    // As the CUDA backend plans at load: every expert on the GPU until it can offload (issue 11).
    offload: false,
  });
  const g = plan.gpu;
  const lines = [
    `${device.name}: ${gb(device.freeBytes)} free of ${gb(device.totalBytes)}${gpuMemory < device.freeBytes ? `, limited to ${gb(gpuMemory)}` : ''}`,
    `for ${contextTokens.toLocaleString('en-US')} tokens and ${plan.forks} forks at ${plan.quantization === 'none' ? check.format?.label ?? 'bf16' : plan.quantization}: ` +
      `weights ${gb(g.weights)} + MLA cache ${gb(g.mlaCache)} + KDA state ${gb(g.kdaState)} + forks ${gb(g.forks)} + workspace ${gb(g.workspace)} = ${gb(g.total)}`,
    ...(plan.offloadedLayers.length > 0 ? [`routed experts of ${plan.offloadedLayers.length} layers in host memory: ${gb(plan.host.experts)}`] : []),
  ];
  if (plan.fits) return { fits: true, lines };
  // The plan speaks in klc's flags; say what each is in the editor.
  const inEditor = [
    ...(plan.advice.includes('--context') ? ['--context is the kimiLinear.maxContextTokens setting'] : []),
    ...(plan.advice.includes('--quantization') ? ['a quantized model is the FP8 or INT4 checkpoint of the model (Get the Model)'] : []),
  ];
  return { fits: false, lines, advice: `${plan.advice}${inEditor.length > 0 ? ` In VS Code, ${inEditor.join('; ')}.` : ''}` };
}

export async function inspectModel(dir: string, budget: MemoryBudget = {}): Promise<ModelInspection> {
  const check = await checkModelFolder(dir);
  const gpu = detectGpus();
  return { check, gpu, fit: fitOnGpu(check, gpu, budget) };
}
