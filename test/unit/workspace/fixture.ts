/** Builds throw-away workspace trees in the OS temp folder for the packer tests. */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { execFileSync } from 'node:child_process';

export type Tree = Record<string, string | Uint8Array>;

export function makeTree(files: Tree, parent?: string): string {
  const root = parent ?? mkdtempSync(join(tmpdir(), 'klc-pack-'));
  for (const [rel, content] of Object.entries(files)) {
    const abs = join(root, rel);
    mkdirSync(dirname(abs), { recursive: true });
    writeFileSync(abs, content);
  }
  return root;
}

export function removeTree(root: string): void {
  rmSync(root, { recursive: true, force: true });
}

/** Runs git in `cwd` with a fixed identity and, when given, a fixed commit date (seconds since the epoch). */
export function git(cwd: string, args: string[], epochSeconds?: number): string {
  const date = epochSeconds === undefined ? {} : { GIT_AUTHOR_DATE: `@${epochSeconds} +0000`, GIT_COMMITTER_DATE: `@${epochSeconds} +0000` };
  return execFileSync('git', args, {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@example.com', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@example.com', ...date },
  });
}

/** Fake credentials, assembled at run time so that this repository never contains one verbatim. */
export const fake = {
  awsKey: 'AKIA' + 'Z7QX4M2PLK9RT3VW',
  githubToken: 'ghp' + '_' + 'a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8',
  privateKey: ['-----BEGIN RSA ' + 'PRIVATE KEY-----', 'MIIEowIBAAKCAQEAx1x2x3x4x5x6x7x8x9', 'q0w9e8r7t6y5u4i3o2p1', '-----END RSA ' + 'PRIVATE KEY-----'].join('\n'),
  slackToken: 'xox' + 'b-' + '123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx',
  googleKey: 'AIza' + 'SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q',
  stripeKey: 'sk_' + 'live_' + '4eC39HqLyjWDarjtT1zdp7dc',
  openaiKey: 'sk-' + 'proj-' + 'Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78St90Uv12',
  jwt: 'eyJ' + 'hbGciOiJIUzI1NiJ9.eyJ' + 'zdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U',
};
