/**
 * `klc quantize IN OUT --scheme S`: writes a compressed-tensors copy of a bf16 (or fp32)
 * checkpoint, the format llm-compressor saves and vLLM loads, and which every klc backend reads.
 */
import { resolve } from 'node:path';
import { UserError } from '../common/errors';
import { SCHEME_NAMES, type SchemeName } from '../engine/model/quant/presets';
import { quantizeCheckpoint } from '../engine/model/quant/write-checkpoint';
import { parseCommandArgs } from './args';

const USAGE = `usage: klc quantize IN OUT --scheme S

  Writes the checkpoint in folder IN, quantized, to the new folder OUT (compressed-tensors format,
  as llm-compressor writes it; vLLM loads it too). lm_head, the MoE router gates and the KDA b_proj
  stay in full precision; every other Linear weight is quantized round-to-nearest.
  --scheme S          w4a16-g128 (INT4, groups of 128, symmetric) | w8a16 (INT8 per channel) |
                      fp8-dynamic (FP8 E4M3 per channel, activations per token at run time)
`;

export async function run(argv: string[]): Promise<void> {
  const { values, positionals } = parseCommandArgs(argv, { scheme: { type: 'string' } }, USAGE);
  if (positionals.length !== 2) throw new UserError(`expected the folders IN and OUT, got ${positionals.length} argument(s). Run 'klc quantize --help'.`);
  const scheme = values.scheme as string | undefined;
  if (!scheme || !(SCHEME_NAMES as readonly string[]).includes(scheme)) throw new UserError(`--scheme must be one of ${SCHEME_NAMES.join(', ')}, got '${scheme ?? ''}'`);
  const [input, output] = positionals.map((p) => resolve(p));
  const started = Date.now();
  const s = await quantizeCheckpoint(input, output, scheme as SchemeName, (line) => process.stderr.write(`${line}\n`));
  const size = (b: number) => (b >= 1e9 ? `${(b / 1e9).toFixed(2)} GB` : `${(b / 1e6).toFixed(1)} MB`);
  process.stderr.write(`wrote ${output}: ${s.modules} modules quantized with ${scheme}, ${size(s.bytesIn)} → ${size(s.bytesOut)} of tensors in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
}
