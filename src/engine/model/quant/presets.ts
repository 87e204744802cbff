/**
 * The schemes this engine writes (`klc quantize --scheme`) and applies at load (`--quantization`):
 * llm-compressor's W4A16 (INT4, group 128, symmetric), W8A16 (INT8 per channel, symmetric) and
 * FP8_DYNAMIC (FP8 E4M3 per channel, activations per token at run time), each described by the
 * `quantization_config` llm-compressor would write, and read back through the same parser as any
 * downloaded checkpoint.
 */
import { parseQuantizationConfig, type QuantScheme } from './scheme';

export const SCHEME_NAMES = ['w4a16-g128', 'w8a16', 'fp8-dynamic'] as const;
export type SchemeName = (typeof SCHEME_NAMES)[number];

/** `--quantization` values and the scheme each one applies. */
export const LOAD_QUANTIZATIONS = ['none', 'int4', 'int8', 'fp8'] as const;
export type LoadQuantization = (typeof LOAD_QUANTIZATIONS)[number];
export const SCHEME_OF: Record<Exclude<LoadQuantization, 'none'>, SchemeName> = { int4: 'w4a16-g128', int8: 'w8a16', fp8: 'fp8-dynamic' };

/** compressed-tensors' version whose serialization these configs follow. */
const COMPRESSED_TENSORS_VERSION = '0.12.2';

function args(numBits: number, type: 'int' | 'float', strategy: string, groupSize: number | null, dynamic: boolean, observer: string | null) {
  return { actorder: null, block_structure: null, dynamic, group_size: groupSize, num_bits: numBits, observer, observer_kwargs: {}, strategy, symmetric: true, type };
}

function group(scheme: SchemeName) {
  switch (scheme) {
    case 'w4a16-g128':
      return { format: 'pack-quantized', input_activations: null, output_activations: null, targets: ['Linear'], weights: args(4, 'int', 'group', 128, false, 'minmax') };
    case 'w8a16':
      return { format: 'pack-quantized', input_activations: null, output_activations: null, targets: ['Linear'], weights: args(8, 'int', 'channel', null, false, 'minmax') };
    case 'fp8-dynamic':
      return {
        format: 'float-quantized',
        input_activations: args(8, 'float', 'token', null, true, null),
        output_activations: null,
        targets: ['Linear'],
        weights: args(8, 'float', 'channel', null, false, 'minmax'),
      };
  }
}

/** The config.json `quantization_config` of a checkpoint quantized with `scheme`, keys sorted as llm-compressor dumps them. */
export function quantizationConfigJson(scheme: SchemeName, ignore: string[]): Record<string, unknown> {
  const g = group(scheme);
  return {
    config_groups: { group_0: g },
    format: g.format,
    global_compression_ratio: null,
    ignore,
    kv_cache_scheme: null,
    quant_method: 'compressed-tensors',
    quantization_status: 'compressed',
    sparsity_config: {},
    transform_config: {},
    version: COMPRESSED_TENSORS_VERSION,
  };
}

export function presetScheme(scheme: SchemeName): QuantScheme {
  const qc = parseQuantizationConfig({ quantization_config: quantizationConfigJson(scheme, []) }, `the ${scheme} preset`);
  return (qc as NonNullable<typeof qc>).schemes[0];
}
