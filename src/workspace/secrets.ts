/**
 * Secrets never reach the model: whole files that exist to hold credentials are left out, and
 * high-confidence credential patterns inside packed files are replaced by `[REDACTED:<kind>]`.
 *
 * Only patterns with a distinctive shape are redacted (provider prefixes, PEM armour, JWT
 * structure), so source code is not mangled by guesses. `.env.example`, `.env.sample`,
 * `.env.template` and `.env.dist` are packed, because they document configuration and are meant
 * to be committed; any real token inside them is still redacted.
 */
import { posix } from 'node:path';

const ENV_TEMPLATES = new Set(['example', 'sample', 'template', 'dist']);

const PRIVATE_KEY_EXTENSIONS = new Set(['.pem', '.key', '.p12', '.pfx', '.p8', '.jks', '.keystore', '.ppk']);
const PRIVATE_KEY_NAMES = new Set(['id_rsa', 'id_dsa', 'id_ecdsa', 'id_ed25519', 'id_ecdsa_sk', 'id_ed25519_sk']);
const CREDENTIAL_NAMES = new Set([
  '.netrc', '_netrc', '.pgpass', '.git-credentials', '.htpasswd', '.pypirc', 'credentials.json',
  'secrets.json', '.secrets', 'terraform.tfstate', 'terraform.tfstate.backup',
]);
/** Files named `credentials` or `config` are only secret inside these tool folders. */
const CREDENTIAL_PATHS = ['.aws/credentials', '.aws/config', '.docker/config.json', '.kube/config', '.gnupg/'];
/** Package-manager configs are fine to pack unless they carry an auth token. */
const TOKEN_CONFIG_NAMES = new Set(['.npmrc', '.yarnrc', '.yarnrc.yml']);
const TOKEN_CONFIG_KEYS = /(?:_authToken|_auth|_password|npmAuthToken|npmAuthIdent)\s*[=:]/;

/**
 * Why a file must not be packed because of its name, or undefined. `relPath` is posix and relative
 * to the workspace root.
 */
export function secretFileByName(relPath: string): string | undefined {
  const name = posix.basename(relPath);
  const lower = name.toLowerCase();
  if (lower === '.env' || lower === '.envrc' || lower.endsWith('.env')) return 'environment file';
  if (lower.startsWith('.env.')) {
    const suffix = lower.slice('.env.'.length);
    return ENV_TEMPLATES.has(suffix) ? undefined : 'environment file';
  }
  if (PRIVATE_KEY_NAMES.has(lower)) return 'private key';
  const ext = posix.extname(lower);
  if (PRIVATE_KEY_EXTENSIONS.has(ext)) return 'private key or certificate store';
  if (CREDENTIAL_NAMES.has(lower) || lower.endsWith('.tfstate')) return 'credential file';
  if (/^client_secret.*\.json$/.test(lower) || /^service[-_]?account.*\.json$/.test(lower)) return 'credential file';
  const withSlash = `/${relPath}`;
  for (const p of CREDENTIAL_PATHS) {
    if (p.endsWith('/') ? withSlash.includes(`/${p}`) : withSlash.endsWith(`/${p}`)) return 'credential file';
  }
  return undefined;
}

/** Why a file must not be packed because of what it contains (an auth token in a package-manager config). */
export function secretFileByContent(relPath: string, text: string): string | undefined {
  if (!TOKEN_CONFIG_NAMES.has(posix.basename(relPath))) return undefined;
  return TOKEN_CONFIG_KEYS.test(text) ? 'package-manager config with an auth token' : undefined;
}

/** Patterns whose match is replaced by `[REDACTED:<kind>]`. Order matters only for overlapping shapes. */
const PATTERNS: ReadonlyArray<readonly [kind: string, source: string]> = [
  ['private-key', String.raw`-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----`],
  ['aws-access-key', String.raw`\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b`],
  ['github-token', String.raw`\b(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,255})\b`],
  ['slack-token', String.raw`\bxox[abposre]-[A-Za-z0-9-]{10,250}`],
  ['slack-webhook', String.raw`https://hooks\.slack\.com/services/T[A-Za-z0-9_]+/B[A-Za-z0-9_]+/[A-Za-z0-9_]+`],
  ['anthropic-key', String.raw`\bsk-ant-[a-z]+[0-9]*-[A-Za-z0-9_-]{80,}`],
  ['openai-key', String.raw`\bsk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,}|[A-Za-z0-9]{48}\b)`],
  ['stripe-key', String.raw`\b(?:sk|rk)_live_[0-9A-Za-z]{24,247}\b`],
  ['google-api-key', String.raw`\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])`],
  ['npm-token', String.raw`\bnpm_[A-Za-z0-9]{36}\b`],
  ['huggingface-token', String.raw`\bhf_[A-Za-z0-9]{34,}\b`],
  ['jwt', String.raw`\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}`],
];

/** One alternation with a capture group per kind, so each file is scanned once. */
const COMBINED = new RegExp(PATTERNS.map(([, source]) => `(${source})`).join('|'), 'g');

export interface Redaction {
  text: string;
  count: number;
  /** kind → number of matches. */
  kinds: Record<string, number>;
}

export function redactSecrets(text: string): Redaction {
  let count = 0;
  const kinds: Record<string, number> = {};
  const redacted = text.replace(COMBINED, (...args: unknown[]) => {
    const groups = args.slice(1, 1 + PATTERNS.length);
    const kind = PATTERNS[groups.findIndex((g) => g !== undefined)][0];
    count++;
    kinds[kind] = (kinds[kind] ?? 0) + 1;
    return `[REDACTED:${kind}]`;
  });
  return { text: count === 0 ? text : redacted, count, kinds };
}
