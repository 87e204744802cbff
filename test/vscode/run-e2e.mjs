// `npm run test:e2e`: builds the extension and the suite, sets up the offline VS Code host
// (idempotent: scripts/setup-vscode-host.sh), then runs each scenario in its own real VS Code:
// the fixture is copied to a temp folder, opened (a folder or a .code-workspace file), and the
// scenario's suite runs in the extension host. Screenshots go to $E2E_ARTIFACTS (default test-results/).
// KLC_E2E_SCENARIOS=a,b runs only those scenarios; KLC_E2E_GREP filters tests by name.
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

/** `suite` names test/vscode/suite/<suite>/ for scenarios other than the main one (the top-level suite files). */
const SCENARIOS = [
  { name: 'workspace', fixture: 'workspace' },
  { name: 'multi-root', fixture: 'multi-root', open: 'multi-root.code-workspace' },
  { name: 'restricted', fixture: 'workspace', trust: true },
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

const results = [];
for (const scenario of chosen) {
  const started = Date.now();
  const ws = mkdtempSync(join(tmpdir(), `klc-e2e-${scenario.name}-`));
  cpSync(join(root, 'test/vscode/fixtures', scenario.fixture), ws, { recursive: true });
  console.log(`\n[e2e] scenario ${scenario.name}`);
  const r = spawnSync('node', ['tools/vscode-host/run-ext-tests.mjs', root, join(root, 'out/test/vscode/suite'), scenario.open ? join(ws, scenario.open) : ws], {
    cwd: root,
    stdio: 'inherit',
    env: {
      ...process.env,
      E2E_ARTIFACTS: resolve(process.env.E2E_ARTIFACTS ?? join(root, 'test-results')),
      KLC_E2E_SCENARIO: scenario.name,
      EXT_TEST_WORKSPACE_TRUST: scenario.trust ? '1' : '0',
    },
  });
  rmSync(ws, { recursive: true, force: true });
  results.push({ name: scenario.name, status: r.status ?? 2, seconds: (Date.now() - started) / 1000 });
}
console.log('\n[e2e] scenarios:');
for (const r of results) console.log(`  ${r.status === 0 ? 'passed' : `FAILED (exit ${r.status})`}  ${r.name}  ${r.seconds.toFixed(1)} s`);
const failed = results.find((r) => r.status !== 0);
process.exit(failed ? failed.status : 0);
