// `npm run test:e2e`: builds the extension and the suite, sets up the offline VS Code host
// (idempotent: scripts/setup-vscode-host.sh), then runs each scenario in its own real VS Code:
// the fixture is copied to a temp folder, opened (a folder or a .code-workspace file), and the
// scenario's suite runs in the extension host. Screenshots go to $E2E_ARTIFACTS (default test-results/).
// KLC_E2E_SCENARIOS=a,b runs only those scenarios; KLC_E2E_GREP filters tests by name.
// The `installed` scenario packages linux-x64 (npm run package), checks the archive's contents and
// installs it into the server with --install-extension; its suite runs against that installed copy.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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

/** `suite` names test/vscode/suite/<suite>/ for scenarios other than the main one (the top-level suite files). */
const SCENARIOS = [
  { name: 'workspace', fixture: 'workspace' },
  { name: 'multi-root', fixture: 'multi-root', open: 'multi-root.code-workspace' },
  { name: 'restricted', fixture: 'workspace', trust: true },
  { name: 'installed', fixture: 'workspace', installed: true },
];
const only = process.env.KLC_E2E_SCENARIOS?.split(',').map((s) => s.trim()).filter(Boolean);
const chosen = only ? SCENARIOS.filter((s) => only.includes(s.name)) : SCENARIOS;
if (chosen.length === 0) {
  console.error(`test:e2e: KLC_E2E_SCENARIOS names none of ${SCENARIOS.map((s) => s.name).join(', ')}`);
  process.exit(2);
}

step('node', ['esbuild.mjs']);
// The extension answers with the bundled tiny checkpoint when no model folder is set.
if (!existsSync(join(root, 'assets/tiny-model/config.json'))) step('node', ['--import', 'tsx', 'tools/make-tiny-checkpoint.ts']);
step('node', ['test/vscode/build.mjs']);
step('bash', ['scripts/setup-vscode-host.sh']);

/**
 * Packages linux-x64 and checks what the archive holds before a user would install it. Returns
 * undefined (after saying why) where the CUDA library can neither be found nor built.
 */
function linuxPackage() {
  const hasNvcc = spawnSync('sh', ['-c', 'command -v nvcc || test -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"']).status === 0;
  if (!hasNvcc && !existsSync(join(root, 'native/build/klc_native.node'))) {
    console.log('[e2e] scenario installed skipped: the linux-x64 package holds the CUDA library, which needs nvcc to build (as .ci/run says)');
    return undefined;
  }
  step('node', ['--import', 'tsx', 'tools/package.ts', '--target', 'linux-x64']);
  const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  const vsix = join(root, 'out/vsix', `kimi-linear-code-linux-x64-${version}.vsix`);
  step('node', ['--import', 'tsx', 'test/vscode/check-vsix.ts', vsix]);
  return vsix;
}

/** The development extension of the installed scenario: an empty one, so that the installed copy is the one that runs. */
function harness() {
  const dir = join(root, 'out/test/vscode/harness');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'klc-e2e-harness', publisher: 'klc-tests', version: '0.0.0', engines: { vscode: '*' } }));
  return dir;
}

const results = [];
for (const scenario of chosen) {
  // The installed scenario's time includes packaging and checking the .vsix.
  const started = Date.now();
  const vsix = scenario.installed ? linuxPackage() : undefined;
  if (scenario.installed && !vsix) {
    results.push({ name: scenario.name, status: 'skipped', seconds: 0 });
    continue;
  }
  const ws = mkdtempSync(join(tmpdir(), `klc-e2e-${scenario.name}-`));
  cpSync(join(root, 'test/vscode/fixtures', scenario.fixture), ws, { recursive: true });
  console.log(`\n[e2e] scenario ${scenario.name}`);
  const extension = vsix ? harness() : root;
  const r = spawnSync('node', ['tools/vscode-host/run-ext-tests.mjs', extension, join(root, 'out/test/vscode/suite'), scenario.open ? join(ws, scenario.open) : ws], {
    cwd: root,
    stdio: 'inherit',
    env: {
      ...process.env,
      E2E_ARTIFACTS: resolve(process.env.E2E_ARTIFACTS ?? join(root, 'test-results')),
      KLC_E2E_SCENARIO: scenario.name,
      EXT_TEST_WORKSPACE_TRUST: scenario.trust ? '1' : '0',
      ...(vsix ? { KLC_E2E_INSTALL_VSIX: vsix } : {}),
    },
  });
  rmSync(ws, { recursive: true, force: true });
  results.push({ name: scenario.name, status: r.status ?? 2, seconds: (Date.now() - started) / 1000 });
}
console.log('\n[e2e] scenarios:');
for (const r of results) console.log(`  ${r.status === 0 ? 'passed' : r.status === 'skipped' ? 'skipped (no nvcc)' : `FAILED (exit ${r.status})`}  ${r.name}  ${r.seconds.toFixed(1)} s`);
const failed = results.find((r) => r.status !== 0 && r.status !== 'skipped');
process.exit(failed ? failed.status : 0);
