/**
 * Whether the device tests may skip. Only a machine without an NVIDIA GPU may: there the CUDA
 * backend cannot load and the tests say why. On a machine with a GPU (seen through the driver's
 * device nodes, not through our library) a library that fails to load is a failure, never a skip.
 */
import { existsSync } from 'node:fs';
import type { CudaAvailability } from '../../src/engine/backends/cuda/loader';

export function nvidiaGpuPresent(): boolean {
  return existsSync('/dev/nvidiactl') || existsSync('/dev/nvidia0');
}

/** The reason to skip, or false when the tests must run (the library loaded, or a GPU is there). */
export function deviceSkip(cuda: CudaAvailability): string | false {
  if (cuda.ok || nvidiaGpuPresent()) return false;
  return `no GPU: ${cuda.reason}`;
}
