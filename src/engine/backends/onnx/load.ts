/**
 * Entry point of the onnx backend for the model loader. onnxruntime-node is a native module: it is
 * loaded here on first use, not when the engine starts, so that a missing or broken install only
 * takes the onnx backend away (auto moves on, with the reason) instead of the whole engine.
 */
import { UserError } from '../../../common/errors';
import type { WeightSource } from '../../model/weight-source';
import type { KimiConfig } from '../../model/config';
import type { Backend } from '../backend';

export async function loadOnnxBackend(config: KimiConfig, checkpoint: WeightSource, log: (line: string) => void, reopen: () => Promise<WeightSource>): Promise<Backend> {
  let mod: typeof import('./backend');
  try {
    mod = await import('./backend');
  } catch (e) {
    const why = (e instanceof Error ? e.message : String(e)).split('\n')[0];
    throw new UserError(`onnxruntime-node could not be loaded (${why}); reinstall the package's dependencies (npm install) or use --backend reference.`);
  }
  return mod.OnnxBackend.load(config, checkpoint, log, reopen);
}
