/**
 * Folders and files that are never worth a model's context: dependencies, build outputs, caches
 * and version-control internals. Globs relative to each root, matched at any depth; the walker
 * never descends into these folders.
 */
export const DEFAULT_EXCLUDES: readonly string[] = [
  // version control
  '**/.git/**', '**/.hg/**', '**/.svn/**', '**/.jj/**', '**/.bzr/**',
  // dependencies
  '**/node_modules/**', '**/bower_components/**', '**/jspm_packages/**', '**/.yarn/**', '**/.pnpm-store/**',
  '**/.venv/**', '**/venv/**', '**/.tox/**', '**/.nox/**', '**/.bundle/**', '**/Pods/**',
  // build outputs
  '**/dist/**', '**/build/**', '**/out/**', '**/target/**', '**/.next/**', '**/.nuxt/**', '**/.svelte-kit/**',
  '**/.output/**', '**/.gradle/**', '**/.dart_tool/**', '**/.terraform/**', '**/.serverless/**',
  '**/__pycache__/**', '**/*.egg-info/**', '**/.eggs/**',
  // caches and tool state
  '**/coverage/**', '**/.nyc_output/**', '**/.cache/**', '**/.parcel-cache/**', '**/.turbo/**',
  '**/.mypy_cache/**', '**/.pytest_cache/**', '**/.ruff_cache/**', '**/.ipynb_checkpoints/**',
  '**/.idea/**', '**/.vscode-test/**', '**/.eslintcache',
  // noise files
  '**/.DS_Store', '**/Thumbs.db', '**/*.swp', '**/*.swo', '**/*.pyc', '**/*.pyo', '**/*.log',
];

/** Per-root files in .gitignore syntax that the packer honours at every depth, besides .gitignore. */
export const IGNORE_FILES: readonly string[] = ['.ignore', '.kimiignore'];

/** Dependency lock files: long, machine-written and of little use for understanding code. */
export const LOCK_FILE_NAMES: ReadonlySet<string> = new Set([
  'package-lock.json', 'npm-shrinkwrap.json', 'yarn.lock', 'pnpm-lock.yaml', 'bun.lock', 'bun.lockb',
  'deno.lock', 'Cargo.lock', 'poetry.lock', 'Pipfile.lock', 'uv.lock', 'pdm.lock', 'composer.lock',
  'Gemfile.lock', 'go.sum', 'mix.lock', 'flake.lock', 'pubspec.lock', 'Podfile.lock', 'Package.resolved',
  'packages.lock.json', 'gradle.lockfile', '.terraform.lock.hcl', 'conda-lock.yml', 'stack.yaml.lock',
  'cabal.project.freeze',
]);

export const DEFAULT_MAX_TOKENS = 1_000_000;
export const DEFAULT_MAX_FILE_BYTES = 1_000_000;
