import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'out/', 'node_modules/', 'tools/*/node_modules/', 'test-results/', '.device*/', '.ref/', 'native/build/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        console: 'readonly', process: 'readonly', Buffer: 'readonly', setTimeout: 'readonly',
        clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', setImmediate: 'readonly',
        URL: 'readonly', TextDecoder: 'readonly', TextEncoder: 'readonly', performance: 'readonly',
        __dirname: 'readonly', require: 'readonly', module: 'writable', window: 'readonly', document: 'readonly',
        AbortController: 'readonly', AbortSignal: 'readonly', queueMicrotask: 'readonly', structuredClone: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-require-imports': 'off',
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  // Layers, as Copilot Chat's folders are: `vscode` only where the extension host runs surfaces,
  // and the engine's code never loaded into the extension host (it runs in its own process and is
  // reached through src/client; the two share src/common).
  {
    files: ['src/**/*.ts'],
    ignores: ['src/extension.ts', 'src/features/**'],
    rules: {
      'no-restricted-imports': ['error', { paths: [{ name: 'vscode', message: 'Only src/extension.ts and src/features/ run in the extension host; keep this module free of vscode so it runs (and is tested) in plain Node.' }] }],
    },
  },
  {
    files: ['src/extension.ts', 'src/features/**/*.ts', 'src/client/**/*.ts', 'src/common/**/*.ts', 'src/workspace/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': ['error', {
        patterns: [{
          group: ['**/engine/**', './engine/*'],
          allowTypeImports: true,
          message: 'The extension host reaches the engine through src/client (it runs in its own process); move what both sides need to src/common.',
        }],
      }],
    },
  },
);
