/**
 * The platform packages `npm run package` builds, and what each adds to .vscodeignore. vsce keeps
 * a file when it matches no ignore line or any `!` line, whatever the order, so .vscodeignore is
 * an allow-list (`**` then `!…` lines) and a target only adds `!` lines: its onnxruntime-node
 * binary folder and, on linux-x64, the CUDA library.
 */

export interface VsixTarget {
  /** vsce's --target name. */
  name: string;
  /** The folder onnxruntime-node loads its binding from: bin/napi-v6/<process.platform>/<process.arch>. */
  ortBinaries: string;
  /** The files of that folder that ship (default: all). */
  ortFiles?: string[];
  /** Whether the prebuilt CUDA library (native/build/klc_native.node) ships. */
  cuda: boolean;
}

export const ORT_BIN = 'node_modules/onnxruntime-node/bin/napi-v6';
export const NATIVE_LIBRARY = 'native/build/klc_native.node';

export const TARGETS: readonly VsixTarget[] = [
  { name: 'linux-x64', ortBinaries: `${ORT_BIN}/linux/x64`, cuda: true },
  { name: 'linux-arm64', ortBinaries: `${ORT_BIN}/linux/arm64`, cuda: false },
  // npm's copy of libonnxruntime.1.30.0.dylib duplicates libonnxruntime.1.dylib (a symlink in
  // ONNX Runtime's build); the binding and the library's own install name use only the latter.
  { name: 'darwin-arm64', ortBinaries: `${ORT_BIN}/darwin/arm64`, ortFiles: ['onnxruntime_binding.node', 'libonnxruntime.1.dylib'], cuda: false },
  { name: 'win32-x64', ortBinaries: `${ORT_BIN}/win32/x64`, cuda: false },
];

export function targetNamed(name: string): VsixTarget {
  const t = TARGETS.find((x) => x.name === name);
  if (!t) throw new Error(`unknown package target "${name}"; the targets are ${TARGETS.map((x) => x.name).join(', ')}`);
  return t;
}

/** The ignore file for one target: the project's .vscodeignore plus the target's own files. */
export function ignoreFileFor(vscodeignore: string, target: VsixTarget): string {
  const lines = [
    `# ${target.name}: its onnxruntime-node binary${target.cuda ? ' and the CUDA library' : ''}`,
    ...(target.ortFiles ?? ['*']).map((f) => `!${target.ortBinaries}/${f}`),
  ];
  if (target.cuda) lines.push(`!${NATIVE_LIBRARY}`);
  return `${vscodeignore.trimEnd()}\n${lines.join('\n')}\n`;
}

/** The .vsix file name for a target, as vsce would name it. */
export function vsixName(name: string, version: string, target: VsixTarget): string {
  return `${name}-${target.name}-${version}.vsix`;
}
