/**
 * The weight quantization schemes a model can run under on the GPU, by the names the setting
 * `kimiLinear.quantization` and `--quantization` take: shared by the extension's settings and the
 * engine's memory plan.
 */
export type Quantization = 'none' | 'fp8' | 'int8' | 'int4';

export const QUANTIZATIONS: readonly Quantization[] = ['none', 'fp8', 'int8', 'int4'];
