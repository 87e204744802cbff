/**
 * Runs `engine-host.js --inspect-model DIR` (src/engine/host/inspect-model.ts) in a process of its
 * own, with the editor's Node as the engine process runs, and returns what it found. Free of
 * `vscode`, so it is tested in plain Node against the real bundle.
 */
import { execFile } from 'node:child_process';
import type { ModelInspection } from '../engine/host/inspect-model';
import type { MemoryBudget } from '../engine/plan/memory-plan';
import { UserError } from '../common/errors';

/** Loading the native library and asking the driver for devices takes a few seconds at most. */
const INSPECT_TIMEOUT_MS = 60_000;

/** `budget`: the context budget and GPU memory limit the engine would load the model with. */
export function inspectModelFolder(enginePath: string, dir: string, budget: MemoryBudget = {}, execPath: string = process.execPath): Promise<ModelInspection> {
  return new Promise((resolve, reject) => {
    execFile(execPath, [enginePath, '--inspect-model', dir, '--budget', JSON.stringify(budget)], {
      env: { ...process.env, ELECTRON_RUN_AS_NODE: '1' },
      timeout: INSPECT_TIMEOUT_MS,
      maxBuffer: 16 * 1024 * 1024,
      windowsHide: true,
    }, (error, stdout, stderr) => {
      if (error) {
        const why = stderr.trim().split('\n').at(-1) || error.message;
        reject(new UserError(`Could not check the model folder ${dir}: the check in ${enginePath} failed (${why}). Reinstall the extension, or see Kimi Linear: Show Logs.`, dir));
        return;
      }
      try {
        resolve(JSON.parse(stdout) as ModelInspection);
      } catch {
        reject(new UserError(`Could not check the model folder ${dir}: ${enginePath} printed no report. Reinstall the extension.`, dir));
      }
    });
  });
}
