/** The reference backend's logits of every position of `ids`, and the error measure the quantization tests compare them by. */
import type { LoadQuantization } from '../../../../src/engine/model/quant/presets';
import { loadModel } from '../../../../src/engine/model/model';

export async function referenceLogits(dir: string, ids: Int32Array, quantization: LoadQuantization = 'none'): Promise<Float32Array> {
  const model = await loadModel(dir, { backend: 'reference', quantization });
  try {
    return await model.prefill(model.newState(), ids, { logits: 'all' });
  } finally {
    await model.dispose();
  }
}

/** The largest absolute difference over the largest magnitude of `want`. */
export function relativeError(got: Float32Array, want: Float32Array): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  return diff / scale;
}
