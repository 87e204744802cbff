/**
 * What "Select Model Folder…" shows before anything loads: the folder check, the GPUs the CUDA
 * library sees (or why it sees none), and whether the model fits the first one. Run by the engine
 * bundle in a process of its own (`engine-host.js --inspect-model DIR`), because loading the
 * native library has no place in the extension host.
 */
import { loadCudaBackend } from '../backends/cuda/loader';
import { checkModelFolder, type FolderCheck } from '../model/folder-check';

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
  /** The figures behind the verdict, one line each. */
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

const gb = (bytes: number) => `${(bytes / 1e9).toFixed(1)} GB`;

/**
 * Whether the weights fit the first GPU's free memory, from their size on disk: the CUDA backend
 * keeps every weight on the device, and the state and workspace of the context come on top.
 */
export function fitOnGpu(check: FolderCheck, gpu: GpuReport): FitReport {
  const device = gpu.devices[0];
  if (!device || check.problems.length > 0 || check.weightBytes === 0) return { lines: [] };
  const lines = [
    `weights: ${gb(check.weightBytes)} (${check.format?.label ?? 'unknown format'}, ${check.shards} file${check.shards === 1 ? '' : 's'})`,
    `${device.name}: ${gb(device.freeBytes)} free of ${gb(device.totalBytes)}`,
  ];
  if (check.weightBytes < device.freeBytes) return { fits: true, lines };
  return {
    fits: false,
    lines,
    advice: `The weights alone need ${gb(check.weightBytes - device.freeBytes)} more than this GPU has free. Use a smaller checkpoint of the same model (FP8 ≈ 49 GB fits an 80 GB card, INT4 ≈ 24–27 GB a 32–48 GB card), free the GPU, or pick a larger one.`,
  };
}

export async function inspectModel(dir: string): Promise<ModelInspection> {
  const check = await checkModelFolder(dir);
  const gpu = detectGpus();
  return { check, gpu, fit: fitOnGpu(check, gpu) };
}
