/**
 * What "Select Model Folder…" shows before anything loads: the folder check, the GPUs the CUDA
 * library sees (or why it sees none), and the memory plan on the first one. Run by the engine
 * bundle in a process of its own (`engine-host.js --inspect-model DIR`), because loading the
 * native library has no place in the extension host.
 */
import { loadCudaBackend } from '../backends/cuda/loader';
import { checkModelFolder, storedScheme, type FolderCheck } from '../model/folder-check';
import { CUDA_SCHEMES, cudaPlan, planFigures } from '../backends/cuda/load-plan';
import type { MemoryBudget } from '../plan/memory-plan';
import { gb } from '../../common/sizes';

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

/**
 * The memory plan for this folder on the first GPU, made as the CUDA backend makes it at load
 * (cudaPlan: same budget checks, context choice and GPU limit), with the budget the engine will
 * load it with (kimiLinear.maxContextTokens, kimiLinear.gpuMemoryLimit).
 */
export function fitOnGpu(check: FolderCheck, gpu: GpuReport, budget: MemoryBudget = {}): FitReport {
  const device = gpu.devices[0];
  const config = check.config;
  if (!device || !config || check.problems.length > 0) return { lines: [] };
  // As the backend decides from the checkpoint's embedding: fp32 runs exactly, anything else in bf16 on tensor cores.
  const matrixBytes = check.format?.label === 'fp32' ? 4 : 2;
  const stored = check.format ? storedScheme(check.format) : undefined;
  const quantization = stored !== undefined && (budget.quantization === undefined || budget.quantization === 'none' || budget.quantization === 'auto') ? stored : budget.quantization;
  const { plan, capped } = cudaPlan(config, { ...budget, ...(quantization ? { quantization } : {}) }, {
    free: device.freeBytes,
    matrixBytes,
    tensorCores: matrixBytes === 2 && process.env.KLC_CUDA_EXACT !== '1',
    dir: check.dir,
    // A stored quantized checkpoint runs as stored; quantizing at load needs bf16 or fp32 weights.
    schemes: stored !== undefined ? [stored] : CUDA_SCHEMES,
  });
  const lines = [
    `${device.name}: ${gb(device.freeBytes)} free of ${gb(device.totalBytes)}${capped ? `, limited to ${gb(plan.gpuMemory)}` : ''}`,
    ...(stored === 'none'
      ? [
          check.format?.activationOrder
            ? `the CUDA backend loads these ${check.format.label} weights dequantized to bf16: they are grouped in activation order (GPTQ desc_act), which its kernels do not read; an export without it runs as stored`
            : `the CUDA backend loads these ${check.format?.label} weights dequantized to bf16 (it runs INT4, INT8 and FP8 weights as stored)`,
        ]
      : []),
    planFigures(plan),
  ];
  if (plan.fits) return { fits: true, lines };
  // The plan speaks in klc's flags; say what each is in the editor.
  const inEditor = [
    ...(plan.advice.includes('--context') ? ['--context is the kimiLinear.maxContextTokens setting'] : []),
    ...(plan.advice.includes('--quantization') ? ['--quantization is the kimiLinear.quantization setting (fp8, int8, int4), or download an INT4 checkpoint (Get the Model)'] : []),
  ];
  return { fits: false, lines, advice: `${plan.advice}${inEditor.length > 0 ? ` In VS Code, ${inEditor.join('; ')}.` : ''}` };
}

export async function inspectModel(dir: string, budget: MemoryBudget = {}): Promise<ModelInspection> {
  const check = await checkModelFolder(dir);
  const gpu = detectGpus();
  return { check, gpu, fit: fitOnGpu(check, gpu, budget) };
}
