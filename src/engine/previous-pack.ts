/**
 * The pack an ingest made, kept in the snapshot's header so that the next ingest of the same
 * settings can keep the context stable (packWorkspace's `previous`, workspace/budget.ts): which
 * files were kept and which were left out for the budget, each with the sha256 of its bytes. It is
 * used only under the same budget and file filters; under others the pack starts afresh.
 */
import { join } from 'node:path';
import type { PackManifest, PreviousPack } from '../workspace';

/** What decides which files a pack may hold: another value of any of these packs afresh. */
export interface PackLimits {
  maxTokens: number;
  include?: string[];
  exclude?: string[];
  maxFileBytes?: number;
}

/** The snapshot header's `pack` entry. */
export interface PackRecord {
  limits: string;
  kept: [string, string][];
  overBudget: [string, string][];
}

function limitsKey(l: PackLimits): string {
  return JSON.stringify([l.maxTokens, l.include ?? [], l.exclude ?? [], l.maxFileBytes ?? null]);
}

export function packRecord(limits: PackLimits, manifest: PackManifest): PackRecord {
  return {
    limits: limitsKey(limits),
    kept: manifest.files.map((f) => [join(f.root, f.file), f.sha256]),
    overBudget: manifest.omitted.flatMap((o) => (o.reason === 'over-budget' && o.file && o.sha256 ? [[join(o.root, o.file), o.sha256] as [string, string]] : [])),
  };
}

const isPairs = (v: unknown): v is [string, string][] =>
  Array.isArray(v) && v.every((p) => Array.isArray(p) && p.length === 2 && typeof p[0] === 'string' && typeof p[1] === 'string');

/** The previous pack in a snapshot header's meta, if it was made under the same limits (anything else: none). */
export function previousPackOf(meta: Record<string, unknown> | undefined, limits: PackLimits): PreviousPack | undefined {
  const r = meta?.pack as Partial<PackRecord> | undefined;
  if (!r || typeof r !== 'object' || r.limits !== limitsKey(limits) || !isPairs(r.kept) || !isPairs(r.overBudget)) return undefined;
  return { kept: new Map(r.kept), overBudget: new Map(r.overBudget) };
}
