/**
 * The linux-x64 .vsix installed into the server with --install-extension, as a user installs it:
 * the extension runs from the extensions folder (not this checkout), its engine loads the model
 * backend from what the package ships (the CUDA library, else onnxruntime-node's linux-x64
 * binary), and the first run goes walkthrough → ingest → first answer. The screenshots taken here
 * are the ones in the README.
 */
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, sep } from 'node:path';
import * as vscode from 'vscode';
import { drive, waitFor, type WebviewElement } from '../index';
import { EXTENSION_ID, ingest, kimi, useShortAnswers } from '../kimi-e2e';
import type { KimiLinearApi } from '../../../../src/extension';
import type { FolderVerdict } from '../../../../src/features/status/model-folder-text';

const ROOT = '#klc-chat';
const query = (selector: string) => drive<WebviewElement[]>({ action: 'query', root: ROOT, selector });

describe('the installed linux-x64 package', function () {
  this.timeout(300_000);
  let api: KimiLinearApi;
  let restoreAnswers: () => Promise<void>;

  before(async () => {
    restoreAnswers = await useShortAnswers();
    api = await kimi();
  });
  after(async () => {
    await restoreAnswers();
  });

  it('runs from the extensions folder the package was installed into, with the files it ships', () => {
    const ext = vscode.extensions.getExtension(EXTENSION_ID);
    assert.ok(ext, `${EXTENSION_ID} is installed`);
    const installedInto = process.env.KLC_E2E_EXTENSIONS_DIR;
    assert.ok(installedInto, 'the runner names the extensions folder');
    assert.ok(ext.extensionPath.startsWith(installedInto + sep), `${ext.extensionPath} is inside ${installedInto}`);
    assert.equal(ext.extensionKind, vscode.ExtensionKind.Workspace);
    for (const file of ['dist/extension.js', 'dist/engine-host.js', 'native/build/klc_native.node', 'node_modules/onnxruntime-node/bin/napi-v6/linux/x64/onnxruntime_binding.node']) {
      assert.ok(existsSync(join(ext.extensionPath, file)), `the installed extension has ${file}`);
    }
    for (const absent of ['src', 'test', 'node_modules/onnxruntime-node/bin/napi-v6/win32', 'dist/extension.js.map']) {
      assert.ok(!existsSync(join(ext.extensionPath, absent)), `the installed extension has no ${absent}`);
    }
  });

  it('opens the walkthrough at its first step, whose button says which backend can run here', async () => {
    await vscode.commands.executeCommand('workbench.action.closeAuxiliaryBar');
    await vscode.commands.executeCommand('workbench.action.openWalkthrough', `${EXTENSION_ID}#kimiLinear.gettingStarted`, false);
    // The Ingest step shows only once the workbench has set isWorkspaceTrusted, which can land
    // after the walkthrough first renders: wait for all five steps rather than the first four seen.
    const titles = await waitFor('the walkthrough steps', () => drive<WebviewElement[]>({ action: 'workbenchQuery', selector: '.getting-started-step .step-title' }),
      (t) => t.length >= 5, 30_000);
    assert.deepEqual(titles.map((t) => t.text.trim()).slice(0, 5), ['Check your GPU', 'Choose a model', 'Ingest your workspace', 'Ask your first question', 'Explain code and annotate files']);
    await new Promise((r) => setTimeout(r, 1000));
    await drive({ action: 'screenshot', name: 'first-run-walkthrough' });
    const gpu = await vscode.commands.executeCommand<string>('kimiLinear.checkGpu');
    assert.match(gpu, /no NVIDIA GPU can run the CUDA backend here \(.+\)\. The onnx backend runs on the CPU|the CUDA backend runs on .+ free of/);
    await vscode.commands.executeCommand('notifications.clearAll');
    await vscode.commands.executeCommand('workbench.action.closeActiveEditor');
  });

  it('ingests with a native backend from the package and answers the first question in the chat panel', async () => {
    const result = await ingest();
    assert.ok(result && result.tokens > 0, 'the workspace was ingested');
    const status = await api.client.status();
    // cuda where this machine has an NVIDIA GPU and driver, else onnxruntime-node's linux-x64
    // binary: either way loaded from the installed package, never the pure-TS fallback.
    assert.ok(status.backend === 'cuda' || status.backend === 'onnx', `backend ${status.backend} (${status.device}) is one the package ships`);
    assert.equal(status.model?.bundled, true, 'the bundled tiny checkpoint answers until a model folder is chosen');

    await vscode.commands.executeCommand('workbench.action.closeAuxiliaryBar');
    await vscode.commands.executeCommand('kimiLinear.chat.focus');
    await waitFor('the panel to render', () => query('.composer textarea'), (t) => t.length === 1);
    await drive({ action: 'type', root: ROOT, selector: '.composer textarea', text: 'What does src/math.ts export?', submit: true });
    const answers = await waitFor('the answer to finish', () => query('.entry.assistant'), (a) => a.length > 0 && !a[a.length - 1].className.includes('streaming'), 240_000);
    const errors = await query('.entry.assistant:last-of-type .entry-footer .error');
    assert.deepEqual(errors.map((e) => e.text), [], 'the answer ended without an error');
    assert.ok(answers[answers.length - 1].text.replace(/^Kimi Linear/, '').trim().length > 0, 'the answer has text');
    await drive({ action: 'screenshot', name: 'first-answer' });
  });

  it('checks a model folder before using it: an incomplete download is refused with what is missing, a complete one is stored with the GPU verdict', async () => {
    const ext = vscode.extensions.getExtension(EXTENSION_ID);
    assert.ok(ext);
    const config = () => vscode.workspace.getConfiguration('kimiLinear');
    const scratch = mkdtempSync(join(tmpdir(), 'klc-model-'));
    try {
      const broken = join(scratch, 'broken');
      cpSync(join(ext.extensionPath, 'assets', 'tiny-model'), broken, { recursive: true });
      unlinkSync(join(broken, 'tokenizer_config.json'));
      const refused = await vscode.commands.executeCommand<FolderVerdict>('kimiLinear.selectModelFolder', vscode.Uri.file(broken));
      assert.equal(refused.use, false);
      assert.match(refused.message, /tiktoken\.model but no tokenizer_config\.json/);
      assert.equal(config().get('modelPath'), '', 'a folder that cannot be used is not stored');
      await vscode.commands.executeCommand('notifications.showList');
      const shown = await waitFor('the refusal in the notification list', () => drive<WebviewElement[]>({ action: 'workbenchQuery', selector: '.notification-list-item' }),
        (n) => n.some((i) => i.text.includes('no tokenizer_config.json')), 15_000);
      assert.match(shown.find((i) => i.text.includes('no tokenizer_config.json'))?.text ?? '', /Get the Model/, 'the refusal offers Get the Model');
      await drive({ action: 'screenshot', name: 'select-model-folder-refused' });
      await vscode.commands.executeCommand('notifications.clearAll');
      await vscode.commands.executeCommand('notifications.hideList');

      const good = join(scratch, 'good');
      cpSync(join(ext.extensionPath, 'assets', 'tiny-model'), good, { recursive: true });
      const used = await vscode.commands.executeCommand<FolderVerdict>('kimiLinear.selectModelFolder', vscode.Uri.file(good));
      assert.equal(used.use, true);
      // This machine either has a GPU the package's CUDA library runs on, or the verdict says it has none and names onnx.
      assert.match(used.message, /: it fits\.$|No NVIDIA GPU can run it here \(.+\), so it runs on the onnx backend/);
      assert.equal(config().get('modelPath'), good);
      await vscode.commands.executeCommand('notifications.showList');
      await waitFor('the verdict in the notification list', () => drive<WebviewElement[]>({ action: 'workbenchQuery', selector: '.notification-list-item' }),
        (n) => n.some((i) => i.text.includes('will use the model in')), 15_000);
      await drive({ action: 'screenshot', name: 'select-model-folder-used' });
      await vscode.commands.executeCommand('notifications.clearAll');
      await vscode.commands.executeCommand('notifications.hideList');
    } finally {
      await config().update('modelPath', undefined, vscode.ConfigurationTarget.Global);
      await config().update('backend', undefined, vscode.ConfigurationTarget.Global);
      rmSync(scratch, { recursive: true, force: true });
    }
  });
});
