/**
 * Running out of memory after the model loaded (a long ingest, many answers at once) is a user
 * matter, not a crash: the request fails with what to change, and the engine keeps serving (the
 * failed request's states are released; the ingested repository, if any, stays as it was).
 */
import { UserError } from '../common/errors';

export const MEMORY_ADVICE =
  'Lower the context budget (kimiLinear.maxContextTokens or --max-tokens), ask fewer questions at once, close other programs using the GPU, ' +
  'or use a quantized model; `klc plan --model DIR --context N --gpu-memory SIZE` shows what fits.';

/** GPU memory exhausted (the native library's KLC_E_OOM) or host memory refused to an array. */
export function isOutOfMemory(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  return (e as { code?: unknown }).code === 'OOM' || (e instanceof RangeError && /allocation failed|Invalid typed array length|out of memory/i.test(e.message));
}

/** Runs `work`; an out-of-memory failure becomes a UserError saying what ran out during `what`, and what to do. */
export async function withMemoryAdvice<T>(what: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (e) {
    if (!isOutOfMemory(e)) throw e;
    throw new UserError(`out of memory while ${what} (${(e as Error).message.split('\n')[0]}). ${MEMORY_ADVICE}`);
  }
}
