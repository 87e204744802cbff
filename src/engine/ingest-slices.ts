/**
 * Where each prefill slice of an ingest ends, and which ends get a checkpoint. A GPU does about as
 * much in one full slice as in a few hundred tokens, so a slice ends short only where a checkpoint
 * is due, and then at the last file boundary inside it: a checkpoint never costs a slice of its own.
 */

export interface SliceEnd {
  end: number;
  checkpoint: boolean;
}

export interface SlicePlan {
  /** Tokens in the context. */
  total: number;
  /** The backend's prefill slice. */
  slice: number;
  /** Wanted distance between checkpoints, in tokens. */
  spacing: number;
  /** File boundaries (token positions where a file ends), ascending. */
  boundaries: readonly number[];
  /** The end of the last file, where new files are appended: a checkpoint where it costs no slice or saves one (nextSliceEnd); -1 if none. */
  filesEnd: number;
}

/** How many boundaries are <= at. */
function countUpTo(boundaries: readonly number[], at: number): number {
  let lo = 0;
  let hi = boundaries.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (boundaries[mid] <= at) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The last boundary b with from < b <= to, or -1. */
function lastBoundaryIn(boundaries: readonly number[], from: number, to: number): number {
  const n = countUpTo(boundaries, to);
  return n > 0 && boundaries[n - 1] > from ? boundaries[n - 1] : -1;
}

/** The first boundary b with from < b <= to, or -1. */
function firstBoundaryIn(boundaries: readonly number[], from: number, to: number): number {
  const n = countUpTo(boundaries, from);
  return n < boundaries.length && boundaries[n] <= to ? boundaries[n] : -1;
}

/**
 * The slice after `position`, given where the last checkpoint is. A due checkpoint takes the last
 * boundary in the slice's second half; a slice without one runs whole and the checkpoint moves to
 * the next slice, where, once overdue by a whole spacing, any boundary serves (files longer than
 * half a slice would otherwise put it off indefinitely). Several checkpoints per slice are asked
 * for only where cutting slices costs nothing (CPU backends, whose cost is per token; a GPU's
 * spacing is at least its slice): then each lands at the first boundary where it is due.
 */
export function nextSliceEnd(plan: SlicePlan, position: number, lastCheckpoint: number): SliceEnd {
  const full = Math.min(position + plan.slice, plan.total);
  if (2 * plan.spacing <= plan.slice) {
    let b = firstBoundaryIn(plan.boundaries, Math.max(position, lastCheckpoint + plan.spacing - 1), full);
    if (b < 0 && plan.filesEnd > position && plan.filesEnd <= full) b = plan.filesEnd;
    return b > 0 && b < plan.total ? { end: b, checkpoint: true } : { end: full, checkpoint: false };
  }
  // The end of the last file is where an ingest that only adds files resumes. A cut there costs a
  // slice of its own when the rest would otherwise run as one; then it is made only if resuming
  // from the last checkpoint instead would recompute a slice or more.
  if (plan.filesEnd > position && plan.filesEnd <= full && (full < plan.total || plan.filesEnd - lastCheckpoint >= plan.slice)) {
    return { end: plan.filesEnd, checkpoint: plan.filesEnd < plan.total };
  }
  if (full - lastCheckpoint < plan.spacing) return { end: full, checkpoint: false };
  const b = lastBoundaryIn(plan.boundaries, position, full);
  const overdue = full - lastCheckpoint >= 2 * plan.spacing;
  if (b > 0 && b < plan.total && (2 * (b - position) >= plan.slice || overdue)) return { end: b, checkpoint: true };
  return { end: full, checkpoint: false };
}
