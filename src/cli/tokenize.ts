/** `klc tokenize`: writes the ids a model's tokenizer gives a file, as a JSON array. */
import { promises as fs } from 'node:fs';
import { parseArgs } from 'node:util';
import { UserError } from '../common/errors';
import { writeFileAtomic } from '../common/atomic';
import { loadTokenizer } from '../engine/model/tokenizer';

const USAGE = `usage: klc tokenize --in FILE --out FILE.json [--model DIR] [--special]

Tokenizes FILE (UTF-8) and writes its token ids as a JSON array to FILE.json.

  --in FILE       text to tokenize
  --out FILE      where to write the ids
  --model DIR     checkpoint folder (tiktoken.model + tokenizer_config.json, or tokenizer.json);
                  default: the bundled tokenizer
  --special       parse special-token strings such as <|im_end|> as special tokens
                  (default: the file is plain text, as when it is packed)
`;

export async function run(argv: string[]): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        in: { type: 'string' },
        out: { type: 'string' },
        model: { type: 'string' },
        special: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new UserError(`${e instanceof Error ? e.message : String(e)}. Run 'klc tokenize --help' for the options.`);
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  if (!values.in || !values.out) throw new UserError(`both --in and --out are required. Run 'klc tokenize --help' for the options.`);
  const tokenizer = await loadTokenizer(values.model);
  let text: string;
  try {
    text = await fs.readFile(values.in, 'utf8');
  } catch (e) {
    throw new UserError(`cannot read --in ${values.in} (${(e as NodeJS.ErrnoException).code ?? String(e)}). Check the path.`, values.in);
  }
  const started = performance.now();
  const ids = values.special ? tokenizer.encode(text) : tokenizer.encodeOrdinary(text);
  const seconds = (performance.now() - started) / 1000;
  await writeFileAtomic(values.out, `[${ids.join(',')}]\n`);
  process.stderr.write(`${ids.length} tokens (${tokenizer.id}) in ${seconds.toFixed(2)} s → ${values.out}\n`);
}
