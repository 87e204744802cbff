/** Shared setup of the ONNX graph tests: the golden tiny checkpoint's weights and a seeded input. */
import * as ort from 'onnxruntime-node';
import { loadConfig, type KimiConfig } from '../../../src/engine/model/config';
import { Checkpoint } from '../../../src/engine/model/checkpoint';
import { loadWeights, type ModelWeights } from '../../../src/engine/reference/weights';
import { createSession } from '../../../src/engine/backends/onnx/runtime';
import { seededRandom } from '../../../src/engine/sampler';
import { TINY_DIR } from '../../golden/golden-data';

export async function tinyWeights(): Promise<{ cfg: KimiConfig; w: ModelWeights }> {
  const cfg = await loadConfig(TINY_DIR);
  const ckpt = await Checkpoint.open(TINY_DIR, cfg);
  try {
    return { cfg, w: await loadWeights(cfg, ckpt) };
  } finally {
    await ckpt.close();
  }
}

export function randomArray(n: number, seed: number, scale = 1): Float32Array {
  const u = seededRandom(seed);
  return Float32Array.from({ length: n }, () => scale * (2 * u() - 1));
}

export async function runGraph(bytes: Uint8Array, feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
  const s = await createSession(bytes, 'cpu');
  try {
    return await s.run(feeds);
  } finally {
    await s.release();
  }
}

export const f32 = (data: Float32Array, dims: number[]) => new ort.Tensor('float32', data, dims);
export const data = (t: ort.Tensor) => t.data as Float32Array;
