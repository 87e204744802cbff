/**
 * The mocha entry the extension host calls (extensionTestsPath = out/test/vscode/suite), plus the
 * client of the runner's browser driver: tests ask tools/vscode-host/run-ext-tests.mjs to act in
 * the workbench (screenshots, reading and clicking inside webviews) the way a user would.
 */
import * as path from 'node:path';
import * as fs from 'node:fs';
import { randomUUID } from 'node:crypto';
import Mocha from 'mocha';

export function run(): Promise<void> {
  const mocha = new Mocha({ ui: 'bdd', color: false, timeout: 120_000 });
  const grep = process.env.KLC_E2E_GREP;
  if (grep) mocha.grep(grep);
  // The main scenario runs the top-level suite files; any other runs those of its own folder.
  const scenario = process.env.KLC_E2E_SCENARIO ?? 'workspace';
  const dir = scenario === 'workspace' ? __dirname : path.join(__dirname, scenario);
  const files = fs.readdirSync(dir).sort().filter((f) => f.endsWith('.test.js'));
  if (files.length === 0) return Promise.reject(new Error(`no test files for scenario ${scenario} in ${dir}`));
  for (const f of files) mocha.addFile(path.join(dir, f));
  return new Promise((resolve, reject) => {
    const runner = mocha.run((failures) => {
      // The runner prints this line last, for CI logs.
      console.log(`${runner.stats?.passes ?? 0} passed, ${failures} failed`);
      if (failures > 0) reject(new Error(`${failures} tests failed.`));
      else resolve();
    });
  });
}

export interface WebviewElement {
  text: string;
  html: string;
  className: string;
  attrs: Record<string, string>;
}

type DriverRequest =
  | { action: 'screenshot'; name: string }
  | { action: 'query'; root: string; selector: string }
  | { action: 'click'; root: string; selector: string; index?: number }
  | { action: 'type'; root: string; selector: string; text: string; submit: boolean }
  | { action: 'press'; root: string; selector?: string; key: string }
  | { action: 'focusOrder'; root: string; start: string; keys: string[] }
  | { action: 'evaluate'; root: string; expression: string }
  | { action: 'workbenchQuery'; selector: string }
  | { action: 'workbenchClick'; selector: string; text?: string }
  | { action: 'dialogs' };

/** Sends one request to the runner (through the log channel) and waits for its answer file. */
export async function drive<T>(req: DriverRequest, timeoutMs = 30_000): Promise<T> {
  const bridge = process.env.KLC_E2E_BRIDGE;
  if (!bridge) throw new Error('KLC_E2E_BRIDGE is not set: run the suite with test/vscode/run-e2e.mjs');
  const id = randomUUID();
  const file = path.join(bridge, `${id}.json`);
  console.log(`[klc-e2e-driver] ${JSON.stringify({ id, ...req })}`);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (fs.existsSync(file)) {
      const answer = JSON.parse(fs.readFileSync(file, 'utf8')) as { ok: boolean; result?: T; error?: string };
      fs.rmSync(file, { force: true });
      if (!answer.ok) throw new Error(`driver ${req.action} failed: ${answer.error}`);
      return answer.result as T;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`driver ${req.action} got no answer in ${timeoutMs} ms`);
}

/** Polls `probe` until it returns a value for which `ok` holds; fails with the last value seen. */
export async function waitFor<T>(what: string, probe: () => Promise<T> | T, ok: (v: T) => boolean, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  while (Date.now() < deadline) {
    last = await probe();
    if (ok(last)) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}; last value: ${JSON.stringify(last)?.slice(0, 2000)}`);
}
