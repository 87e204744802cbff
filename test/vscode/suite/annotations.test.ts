/**
 * CodeLens actions above functions and classes, "Annotate File" summaries at the end of symbol
 * lines, their removal on edit and return on undo (from the cache), and the toggle.
 */
import assert from 'node:assert/strict';
import * as vscode from 'vscode';
import type { KimiLinearApi } from '../../../src/extension';
import { waitFor } from './index';
import { kimi, removeDir, writeFile } from './kimi-e2e';

const DIR = 'klc-e2e-annotations';
const SOURCE = [
  'export function area(w: number, h: number): number {',
  '  return w * h;',
  '}',
  '',
  'export class Rectangle {',
  '  constructor(readonly w: number, readonly h: number) {}',
  '  area(): number {',
  '    return area(this.w, this.h);',
  '  }',
  '}',
  '',
].join('\n');
const TOP_LEVEL_LINES = [0, 4];

describe('Annotations', function () {
  this.timeout(300_000);
  let api: KimiLinearApi;
  let uri: vscode.Uri;
  let editor: vscode.TextEditor;

  before(async () => {
    api = await kimi();
    uri = await writeFile(DIR, 'shapes.ts', SOURCE);
    editor = await vscode.window.showTextDocument(uri);
    await waitFor(
      'document symbols from the TypeScript extension',
      async () => vscode.commands.executeCommand<vscode.DocumentSymbol[] | undefined>('vscode.executeDocumentSymbolProvider', uri),
      (symbols) => (symbols?.length ?? 0) >= 2,
      120_000,
    );
  });

  after(async () => {
    await vscode.workspace.getConfiguration('kimiLinear').update('annotations.enabled', undefined, vscode.ConfigurationTarget.Global);
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
    await removeDir(DIR);
  });

  it('puts Explain and "Where is this used?" above functions, classes and methods', async () => {
    const lenses = await vscode.commands.executeCommand<vscode.CodeLens[]>('vscode.executeCodeLensProvider', uri);
    const ours = lenses.filter((l) => l.command?.command.startsWith('kimiLinear.'));
    const at = (command: string) => ours.filter((l) => l.command?.command === command).map((l) => l.range.start.line).sort((a, b) => a - b);
    assert.deepEqual(at('kimiLinear.explainSymbol'), [0, 4, 6]);
    assert.deepEqual(at('kimiLinear.findUsages'), [0, 4, 6]);
    const explainArea = ours.find((l) => l.command?.command === 'kimiLinear.explainSymbol' && l.range.start.line === 0);
    assert.equal(explainArea?.command?.title, '$(sparkle) Explain');
    assert.equal(explainArea?.command?.arguments?.[2], 'area');
  });

  it('annotates the top-level symbols, hides the summaries on edit and shows them again on undo', async () => {
    await vscode.commands.executeCommand('kimiLinear.annotateFile', uri);
    const shown = api.shownAnnotations(uri);
    assert.ok(shown.length > 0, 'at least one summary is drawn');
    for (const a of shown) {
      assert.ok(TOP_LEVEL_LINES.includes(a.line), `summary on line ${a.line} belongs to a top-level symbol`);
      assert.ok(a.text.length > 0 && a.text.length <= 120 && !a.text.includes('\n'), `one short line: ${JSON.stringify(a.text)}`);
    }

    await editor.edit((b) => b.insert(new vscode.Position(3, 0), '// changed\n'));
    assert.deepEqual(api.shownAnnotations(uri), [], 'an edit hides the summaries');

    await vscode.commands.executeCommand('undo');
    await waitFor('summaries back from the cache after undo', () => api.shownAnnotations(uri).length === shown.length, Boolean);
    assert.deepEqual(api.shownAnnotations(uri), shown);
  });

  it('the toggle turns lenses and summaries off and on', async () => {
    await vscode.commands.executeCommand('kimiLinear.toggleAnnotations');
    assert.equal(vscode.workspace.getConfiguration('kimiLinear').get('annotations.enabled'), false);
    await waitFor('summaries hidden', () => api.shownAnnotations(uri).length === 0, Boolean);
    const lenses = await vscode.commands.executeCommand<vscode.CodeLens[]>('vscode.executeCodeLensProvider', uri);
    assert.equal(lenses.filter((l) => l.command?.command.startsWith('kimiLinear.')).length, 0);

    await vscode.commands.executeCommand('kimiLinear.toggleAnnotations');
    assert.equal(vscode.workspace.getConfiguration('kimiLinear').get('annotations.enabled'), true);
    await waitFor('summaries shown again', () => api.shownAnnotations(uri).length > 0, Boolean);
  });
});
