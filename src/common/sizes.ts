/**
 * Sizes as users write them: memory as `24GB` (10⁹), `24GiB` (2³⁰), `512MB`, `512MiB` or plain
 * bytes; token counts as `1M` (1,048,576), `128k` (131,072) or plain numbers, since contexts are
 * spoken of in powers of two. Parsers return undefined for text that is not a size; callers say
 * which option was wrong.
 */

const MEMORY_UNITS: Record<string, number> = {
  '': 1, b: 1,
  kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12,
  kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40,
};

const TOKEN_UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20 };

function parseScaled(text: string, units: Record<string, number>): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  if (!m) return undefined;
  const unit = units[m[2].toLowerCase()];
  if (unit === undefined) return undefined;
  const n = Math.round(Number(m[1]) * unit);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** Bytes from `24GB`, `24GiB`, `512MiB` or plain digits. */
export function parseBytes(text: string): number | undefined {
  return parseScaled(text, MEMORY_UNITS);
}

/** Tokens from `1M`, `128k`, `4096`. */
export function parseTokens(text: string): number | undefined {
  return parseScaled(text, TOKEN_UNITS);
}

/** Decimal gigabytes with two decimals, the unit cards are sold in. */
export function gb(bytes: number): string {
  return `${(bytes / 1e9).toFixed(2)} GB`;
}

export function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(2)} GiB`;
}
