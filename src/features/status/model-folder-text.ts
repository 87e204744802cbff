/**
 * What "Select Model Folder…" tells the user about a folder it checked: why it cannot be used, or
 * that it will be used, on which GPU, whether it fits and what to change when it does not; and
 * the onnx backend when no GPU can run it. Pure, so it is tested without VS Code.
 */
import type { ModelInspection } from '../../engine/host/inspect-model';

export interface FolderVerdict {
  /** false: the folder is not stored in the setting. */
  use: boolean;
  severity: 'error' | 'warning' | 'info';
  message: string;
  /** The backend setting to switch to: a `cuda` setting cannot run without a GPU. */
  backend?: 'onnx';
}

const gb = (bytes: number) => (bytes >= 1e9 ? `${(bytes / 1e9).toFixed(1)} GB` : `${(bytes / 1e6).toFixed(1)} MB`);

export function folderVerdict(inspection: ModelInspection, backendSetting: string): FolderVerdict {
  const { check, gpu, fit } = inspection;
  if (check.problems.length > 0) {
    return { use: false, severity: 'error', message: `Kimi Linear cannot use ${check.dir}: ${check.problems.join('; ')}.` };
  }
  const what = `${check.format?.label ?? 'unknown format'}, ${gb(check.weightBytes)}`;
  const head = `Kimi Linear will use the model in ${check.dir} (${what}) from the next request.`;
  if (gpu.devices.length === 0) {
    const why = (gpu.unavailable ?? 'no CUDA device found').replace(/^CUDA backend not available: /, '');
    const switched = backendSetting === 'cuda' ? ' The backend setting was "cuda"; it is now "onnx".' : '';
    return {
      use: true,
      severity: 'warning',
      message: `${head} No NVIDIA GPU can run it here (${why.replace(/\.$/, '')}), so it runs on the onnx backend on the CPU: expect minutes per answer with the 48B model.${switched}`,
      ...(backendSetting === 'cuda' ? { backend: 'onnx' as const } : {}),
    };
  }
  const figures = fit.lines.join('; ');
  if (fit.fits === false) return { use: true, severity: 'warning', message: `${head} ${figures}. It ${fit.advice ?? 'does not fit.'}` };
  return { use: true, severity: 'info', message: `${head} ${figures}: it fits.` };
}

/** "Check GPU and Backend": which backend can run here, and on what. */
export function setupSummary(inspection: ModelInspection): { severity: 'warning' | 'info'; message: string } {
  const { gpu } = inspection;
  if (gpu.devices.length === 0) {
    const why = (gpu.unavailable ?? 'no CUDA device found').replace(/^CUDA backend not available: /, '').replace(/\.$/, '');
    return { severity: 'warning', message: `Kimi Linear: no NVIDIA GPU can run the CUDA backend here (${why}). The onnx backend runs on the CPU instead: fine for the bundled tiny model, minutes per answer for the 48B one.` };
  }
  const cards = gpu.devices.map((d) => `${d.name} (${gb(d.freeBytes)} free of ${gb(d.totalBytes)}, compute ${d.computeCapability})`).join(', ');
  return { severity: 'info', message: `Kimi Linear: the CUDA backend runs on ${cards}. Next, choose a model that fits it.` };
}
