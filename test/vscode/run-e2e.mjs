// `npm run test:e2e`: builds the extension and the suite, sets up the offline VS Code host
// (idempotent: scripts/setup-vscode-host.sh), copies the fixture workspace to a temp folder and
// runs the suite in a real extension host. Screenshots go to $E2E_ARTIFACTS (default test-results/).
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..', '..');
const step = (cmd, args, env = process.env) => {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env });
  if (r.status !== 0) {
    console.error(`test:e2e: ${cmd} ${args.join(' ')} failed (${r.status ?? r.signal})`);
    process.exit(r.status || 2);
  }
};

step('node', ['esbuild.mjs']);
// The extension answers with the bundled tiny checkpoint when no model folder is set.
if (!existsSync(join(root, 'assets/tiny-model/config.json'))) step('node', ['--import', 'tsx', 'tools/make-tiny-checkpoint.ts']);
step('node', ['test/vscode/build.mjs']);
step('bash', ['scripts/setup-vscode-host.sh']);
const ws = mkdtempSync(join(tmpdir(), 'klc-e2e-ws-'));
cpSync(join(root, 'test/vscode/fixtures/workspace'), ws, { recursive: true });
const r = spawnSync('node', ['tools/vscode-host/run-ext-tests.mjs', root, join(root, 'out/test/vscode/suite'), ws], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, E2E_ARTIFACTS: resolve(process.env.E2E_ARTIFACTS ?? join(root, 'test-results')) },
});
rmSync(ws, { recursive: true, force: true });
process.exit(r.status ?? 2);
