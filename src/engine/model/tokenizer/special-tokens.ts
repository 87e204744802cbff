import { UserError } from '../../../common/errors';

/** Kimi reserves this many special ids right after the base vocabulary (spec §6). */
export const SPECIAL_TOKEN_COUNT = 256;

/**
 * Names the special ids base..base+255 from a HF `tokenizer_config.json`'s `added_tokens_decoder`;
 * unnamed slots are "<|reserved_token_{id}|>", as in Kimi's tokenization_kimi.py.
 */
export function kimiSpecialTokens(config: unknown, base: number, file: string): Map<string, number> {
  const fix = 'Re-download tokenizer_config.json of the checkpoint.';
  if (typeof config !== 'object' || config === null || Array.isArray(config)) {
    throw new UserError(`${file} must hold a JSON object. ${fix}`, file);
  }
  const decoder = (config as { added_tokens_decoder?: unknown }).added_tokens_decoder ?? {};
  if (typeof decoder !== 'object' || decoder === null || Array.isArray(decoder)) {
    throw new UserError(`${file}: "added_tokens_decoder" must be an object of id → {content}. ${fix}`, file);
  }
  const names = new Map<number, string>();
  for (const [key, entry] of Object.entries(decoder)) {
    const id = Number(key);
    const content = (entry as { content?: unknown } | null)?.content;
    if (!Number.isInteger(id) || typeof content !== 'string' || content === '') {
      throw new UserError(`${file}: added_tokens_decoder["${key}"] needs an integer id and a non-empty "content". ${fix}`, file);
    }
    if (id < base || id >= base + SPECIAL_TOKEN_COUNT) {
      throw new UserError(
        `${file}: added token ${JSON.stringify(content)} has id ${id}, outside the special range ${base}..${base + SPECIAL_TOKEN_COUNT - 1} that follows the ${base} ranks of tiktoken.model. Use the tokenizer_config.json that belongs to this tiktoken.model.`,
        file,
      );
    }
    names.set(id, content);
  }
  const special = new Map<string, number>();
  for (let id = base; id < base + SPECIAL_TOKEN_COUNT; id++) {
    const name = names.get(id) ?? `<|reserved_token_${id}|>`;
    if (special.has(name)) throw new UserError(`${file}: the special token ${JSON.stringify(name)} is given two ids. ${fix}`, file);
    special.set(name, id);
  }
  return special;
}
