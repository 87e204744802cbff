/**
 * Kimi's pre-tokenization pattern (spec §6), in two spellings that must select the same pieces:
 * the original Rust/fancy-regex form that Kimi's `tiktoken.model` was built with (and that the
 * `tiktoken` library accepts, used by the parity tests), and a JavaScript port.
 *
 * Porting decisions, each checked by the parity tests against `tiktoken`:
 * - `&&` class intersection needs the `v` flag and nested classes in JavaScript.
 * - `\p{Han}` is the Han *script* in Rust's regex crate; JavaScript spells it `\p{Script=Han}`.
 * - `\s` in Rust is the Unicode White_Space property, while JavaScript's `\s` also matches U+FEFF
 *   (the byte-order mark) and misses U+0085; `\p{White_Space}` matches Rust exactly.
 * - `(?i:'s|…)` is expanded by hand; Rust's simple case folding also maps `s` to U+017F (ſ).
 */
export const KIMI_PAT_STR = [
  '[\\p{Han}]+',
  "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}&&[^\\p{Han}]]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}&&[^\\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
  "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}&&[^\\p{Han}]]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}&&[^\\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
  '\\p{N}{1,3}',
  ' ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*',
  '\\s*[\\r\\n]+',
  '\\s+(?!\\S)',
  '\\s+',
].join('|');

const WS = '\\p{White_Space}';
const NOT_WS = '\\P{White_Space}';
const UPPERISH = '[[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]--\\p{Script=Han}]';
const LOWERISH = '[[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]--\\p{Script=Han}]';
const CONTRACTION = "(?:'[sS\\u017F]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?";

/** The JavaScript source of the pattern; compile with the `gv` flags (see {@link kimiPieceRegExp}). */
export const KIMI_PAT_JS = [
  '\\p{Script=Han}+',
  `[^\\r\\n\\p{L}\\p{N}]?${UPPERISH}*${LOWERISH}+${CONTRACTION}`,
  `[^\\r\\n\\p{L}\\p{N}]?${UPPERISH}+${LOWERISH}*${CONTRACTION}`,
  '\\p{N}{1,3}',
  ` ?[^${WS}\\p{L}\\p{N}]+[\\r\\n]*`,
  `${WS}*[\\r\\n]+`,
  `${WS}+(?!${NOT_WS})`,
  `${WS}+`,
].join('|');

/** A fresh global regex over the pattern (fresh because `lastIndex` is per instance). */
export function kimiPieceRegExp(): RegExp {
  return new RegExp(KIMI_PAT_JS, 'gv');
}
