import type { Tokenizer } from '../engine/model/tokenizer/types';

/** Why a discovered file is not in the packed context. Each omitted file carries one. */
export type OmitReason =
  | 'secret-file'
  | 'lock-file'
  | 'too-large'
  | 'binary'
  | 'not-utf8'
  | 'minified'
  | 'generated'
  | 'symlink'
  | 'symlink-loop'
  | 'not-regular-file'
  | 'unreadable'
  | 'over-budget';

export interface PackProgress {
  phase: 'discover' | 'read' | 'order' | 'tokenize' | 'budget';
  done: number;
  total: number;
}

export interface PackOptions {
  /** Absolute folders; more than one is a multi-root workspace. */
  roots: string[];
  tokenizer: Tokenizer;
  /** Token budget for the whole packed context, file index included. Default 1,000,000. */
  maxTokens?: number;
  /** Globs (fast-glob syntax, relative to each root) of files to consider; empty means every file. */
  include?: string[];
  /** Patterns in .gitignore syntax, applied like one more ignore file at each root. */
  exclude?: string[];
  /** Files larger than this are omitted as 'too-large' without being read. Default 1,000,000. */
  maxFileBytes?: number;
  /** Prefix each line of each file with its 1-based number. Default false. */
  lineNumbers?: boolean;
  /** The last pack of the same settings: files keep their places in it where the budget allows (budget.ts). */
  previous?: PreviousPack;
  onProgress?: (p: PackProgress) => void;
  signal?: AbortSignal;
}

/** What a previous pack kept and what it left out for the budget: absolute path -> sha256 (hex) of the file's bytes. */
export interface PreviousPack {
  kept: ReadonlyMap<string, string>;
  overBudget: ReadonlyMap<string, string>;
}

/** Where a file sits in the packing order: lower keys come first (see order.ts). */
export interface OrderKey {
  /** 'git': last commit time; 'git-dirty': modified or untracked, mtime; 'mtime': not in a repository. */
  source: 'git' | 'git-dirty' | 'mtime';
  /** Seconds since the epoch. */
  time: number;
}

export interface PackedFileEntry {
  /** Path as rendered in the packed text (posix; prefixed by the root's name in multi-root packs). */
  path: string;
  /** Absolute root folder the file belongs to. */
  root: string;
  /** Path relative to `root`, posix separators. */
  file: string;
  /** sha256 (hex) of the file's bytes on disk, before any normalisation or redaction. */
  sha256: string;
  bytes: number;
  /** Token span [start, end) of the file's block in the packed ids. */
  start: number;
  end: number;
  redactions: number;
  order: OrderKey;
}

export interface OmittedFileEntry {
  path: string;
  root: string;
  reason: OmitReason;
  detail: string;
  /** For 'over-budget' files, what the next pack's `previous.overBudget` is keyed by: the path relative to `root` (posix) and the sha256 (hex) of the bytes. */
  file?: string;
  sha256?: string;
}

export interface PackManifest {
  version: 2;
  packerVersion: string;
  tokenizer: string;
  maxTokens: number;
  lineNumbers: boolean;
  totalTokens: number;
  roots: { name: string; path: string }[];
  /** Token span of the index (the tree of every packed file), which follows the files. */
  index: { start: number; end: number };
  files: PackedFileEntry[];
  omitted: OmittedFileEntry[];
}

export interface PackBlock {
  kind: 'file' | 'index';
  /** Rendered path for file blocks. */
  path?: string;
  text: string;
  start: number;
  end: number;
}

export interface PackStats {
  files: number;
  tokens: number;
  bytes: number;
  omitted: Partial<Record<OmitReason, number>>;
  secretsRedacted: number;
  seconds: number;
}

export interface PackResult {
  /** Concatenation of every block's own token ids, in block order. */
  ids: Uint32Array;
  blocks: PackBlock[];
  manifest: PackManifest;
  stats: PackStats;
}
