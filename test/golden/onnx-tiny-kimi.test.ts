/** The ONNX Runtime backend against the golden outputs of transformers 5.17 (cases in tiny-kimi-cases.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tinyKimiGoldenCases } from './tiny-kimi-cases';

tinyKimiGoldenCases('onnx', {
  extra: (loaded) => {
    test('the onnx backend loads and says which execution provider runs', () => {
      const { model, logged } = loaded();
      assert.equal(model.backend.name, 'onnx');
      assert.ok(logged.some((l) => /^backend onnx: (CPU|CUDA) execution provider \(.+\)$/.test(l)), logged.join('\n'));
    });
  },
});
