/**
 * `klc ask` with several --question options: one batch, each answer printed under its question in
 * question order, equal to what the session answers for that question alone.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { inOrder, questionsOf } from '../../../src/cli/ask';
import type { AskResult } from '../../../src/engine/api';
import { isUserError } from '../../../src/common/errors';
import { EngineSession } from '../../../src/engine/session';

const repoRoot = resolve(__dirname, '..', '..', '..');

test('several --question options are answered in one run, each under its question', async () => {
  const ws = mkdtempSync(join(tmpdir(), 'klc-cli-ask-ws-'));
  mkdirSync(join(ws, 'src'));
  writeFileSync(join(ws, 'src/m.ts'), 'export function add(a: number, b: number): number {\n  return a + b;\n}\n');
  const questions = ['What does add do?', 'Where is add?', 'Name a file.'];
  const r = spawnSync(process.execPath, [
    '--import', 'tsx', join(repoRoot, 'src/cli.ts'), 'ask',
    ...questions.flatMap((q) => ['--question', q]),
    '--workspace', ws, '--backend', 'reference', '--cache-dir', mkdtempSync(join(tmpdir(), 'klc-cli-ask-cache-')), '--max-new-tokens', '5',
  ], { encoding: 'utf8', cwd: repoRoot });
  assert.equal(r.status, 0, r.stderr);
  const session = await EngineSession.open({ backend: 'reference', cacheDir: mkdtempSync(join(tmpdir(), 'klc-cli-ask-cache-')), workspace: { roots: [ws] }, log: () => {} });
  try {
    let expected = '';
    for (const [i, question] of questions.entries()) {
      const alone = await session.ask({ question, sampling: { maxNewTokens: 5 } });
      expected += `${i > 0 ? '\n' : ''}## ${question}\n\n${alone.text}\n`;
    }
    assert.equal(r.stdout, expected);
  } finally {
    await session.dispose();
  }
  assert.equal(r.stderr.match(/^\[\d\] time to first token/gm)?.length, 3, r.stderr);
});

test('questions come as words or as --question options, never both, never empty', () => {
  assert.deepEqual(questionsOf(['how', 'does', 'it', 'work?'], []), ['how does it work?']);
  assert.deepEqual(questionsOf([], ['a?', ' b? ']), ['a?', 'b?']);
  assert.throws(() => questionsOf(['x'], ['y']), (e: Error) => isUserError(e) && /not both/.test(e.message));
  assert.throws(() => questionsOf([], []), (e: Error) => isUserError(e) && /no question given/.test(e.message));
  assert.throws(() => questionsOf([], ['a', ' ']), (e: Error) => isUserError(e) && /--question number 2 is empty/.test(e.message));
});

test('answers that end in any order are printed in question order', () => {
  const printed: number[] = [];
  const done = inOrder(4, (i) => printed.push(i));
  const r = {} as AskResult;
  done(2, r);
  assert.deepEqual(printed, []);
  done(0, r);
  assert.deepEqual(printed, [0]);
  done(3, r);
  done(1, r);
  assert.deepEqual(printed, [0, 1, 2, 3]);
});
