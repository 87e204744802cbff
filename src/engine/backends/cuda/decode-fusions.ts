/**
 * Which of the CUDA backend's decode fusions run. Each saves launches at a decode step and each was measured
 * apart from the others' effects only together (test/gpu/results/round-h100-2026-12-08m), so they are chosen
 * one by one with KLC_FUSED_DECODE: `1` all, `0` or unset none, or a comma list of
 *   router  the post-attention residual add and norm, the router's logits and its top-k in one launch;
 *   shared  the shared expert inside the routed experts' small-batch kernels, as one more expert of weight 1;
 *   kda     b_proj and the gated output norm inside the KDA decode launch.
 * Each applies to every decode batch of up to 8 rows alike, so an answer's tokens do not depend on how many
 * answers run beside it (the fused norm, for one, rounds differently from klc_add_rmsnorm). None is on by
 * default: on an H100 all three together, with the down kernel by expert, made one answer's step 2% faster and
 * 8 answers' 5% slower, and with the column down kernel both slower.
 */
export type DecodeFusions = { readonly router: boolean; readonly shared: boolean; readonly kda: boolean };

const PARTS = ['router', 'shared', 'kda'] as const;

export function decodeFusions(value: string | undefined): DecodeFusions {
  const v = (value ?? '').trim();
  if (v === '' || v === '0') return { router: false, shared: false, kda: false };
  if (v === '1') return { router: true, shared: true, kda: true };
  const parts = v.split(',').map((p) => p.trim());
  const unknown = parts.filter((p) => !(PARTS as readonly string[]).includes(p));
  if (unknown.length > 0) {
    throw new Error(`KLC_FUSED_DECODE=${value}: unknown part ${unknown.map((p) => `"${p}"`).join(', ')}; use 1, 0 or a comma list of ${PARTS.join(', ')}`);
  }
  return { router: parts.includes('router'), shared: parts.includes('shared'), kda: parts.includes('kda') };
}
