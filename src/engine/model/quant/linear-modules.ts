/**
 * The modules of Kimi Linear that are `Linear` layers in the transformers model, hence what a
 * compressed-tensors target "Linear" selects: every projection matrix, the experts and lm_head.
 * The embedding, the short convolutions and the MoE router gate (a plain parameter there, and kept
 * in full precision by vLLM) are not.
 */
import type { KimiConfig } from '../config';
import { EMBED, kdaNames, mlaNames, moeNames } from '../weight-names';

/** The module a weight belongs to: its name without ".weight". */
const moduleOf = (weight: string): string => weight.slice(0, -'.weight'.length);

/** Module name → [rows, cols] of its weight. */
export function linearModules(cfg: KimiConfig, expected: Map<string, number[][]>): Map<string, [number, number]> {
  const routers = new Set(cfg.layers.flatMap((l, i) => (l.ffn === 'moe' ? [moeNames(cfg, i).router] : [])));
  const out = new Map<string, [number, number]>();
  for (const [name, shapes] of expected) {
    const shape = shapes[0];
    if (shape.length !== 2 || name === EMBED || routers.has(name) || !name.endsWith('.weight')) continue;
    out.set(moduleOf(name), [shape[0], shape[1]]);
  }
  return out;
}

/**
 * Modules `klc quantize` and quantization at load leave in full precision: lm_head and the router
 * gates (vLLM builds them unquantized); the KDA beta projection b_proj, which has as many rows
 * as heads (32), fewer than vLLM's Marlin INT4/INT8 kernels accept (64), and is a negligible share
 * of the weights; and MLA's kv_b_proj, which no backend runs as one matrix: it is split per head into
 * W_UK and W_UV and kept dense, in the checkpoint's dtype on the GPU. Quantized, its dequantized values
 * (a code times a bf16 scale: up to 15 significant bits) would be rounded again to bf16 there, so the
 * GPU would not compute what the reference does; and at 0.06% of the 48B model's weights (59 MB in bf16), quantizing it
 * saves 44 MB.
 */
export function keptInFullPrecision(cfg: KimiConfig): string[] {
  const routers = cfg.layers.flatMap((l, i) => (l.ffn === 'moe' ? [moduleOf(moeNames(cfg, i).router)] : []));
  const bProj = cfg.layers.flatMap((l, i) => (l.attention === 'kda' ? [moduleOf(kdaNames(i).bProj)] : []));
  const kvB = cfg.layers.flatMap((l, i) => (l.attention === 'mla' ? [moduleOf(mlaNames(i).kvB)] : []));
  return [...(cfg.tieWordEmbeddings ? [] : ['lm_head']), ...routers, ...bProj, ...kvB];
}
