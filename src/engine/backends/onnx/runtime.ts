/**
 * onnxruntime-node sessions: the execution provider is chosen once per process (CUDA when the
 * installed package carries its provider and it starts, otherwise CPU, with the reason), threads
 * follow the machine, and each graph becomes one session that the backend keeps and reuses.
 */
import { availableParallelism } from 'node:os';
import * as ort from 'onnxruntime-node';
import { Graph } from './graph';

export type Provider = 'cuda' | 'cpu';

export interface ProviderChoice {
  provider: Provider;
  /** One line for the log: which provider runs and why another was not used. */
  reason: string;
}

function options(provider: Provider): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: provider === 'cuda' ? ['cuda', 'cpu'] : ['cpu'],
    intraOpNumThreads: availableParallelism(),
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    // Per-session arenas would each keep their own peak of activation memory, across some 40 sessions.
    enableCpuMemArena: false,
    logSeverityLevel: 3,
    // Every layer is its own session with its own pool; threads that spin after a run would take
    // the cores from the next layer's session.
    extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
  };
}

/** A one-node graph used to find out whether a provider can start at all. */
function probeModel(): Uint8Array {
  const g = new Graph();
  g.output('y', g.op('Relu', [g.input('x', 'float', [1])]), 'float', [1]);
  return g.encodeModel('probe');
}

let choice: Promise<ProviderChoice> | null = null;

/** Decides once per process; `KLC_ONNX_PROVIDER=cpu` skips the CUDA attempt. */
export function chooseProvider(): Promise<ProviderChoice> {
  choice ??= (async (): Promise<ProviderChoice> => {
    if (process.env.KLC_ONNX_PROVIDER === 'cpu') return { provider: 'cpu', reason: 'CPU execution provider (KLC_ONNX_PROVIDER=cpu)' };
    // The probe's failure is reported in our own log line; onnxruntime's own error print would only repeat it.
    ort.env.logLevel = 'fatal';
    const cuda = ort.listSupportedBackends().find((b) => b.name === 'cuda');
    if (!cuda) return { provider: 'cpu', reason: 'CPU execution provider (this onnxruntime-node build has no CUDA provider)' };
    try {
      const s = await ort.InferenceSession.create(probeModel(), { executionProviders: ['cuda'], logSeverityLevel: 4 });
      await s.release();
      return { provider: 'cuda', reason: 'CUDA execution provider (its provider library loaded and a probe session ran)' };
    } catch (e) {
      const why = (e instanceof Error ? e.message : String(e)).split('\n')[0].slice(0, 200);
      return { provider: 'cpu', reason: `CPU execution provider (CUDA provider not usable: ${why})` };
    }
  })();
  return choice;
}

export async function createSession(model: Uint8Array, provider: Provider): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(model, options(provider));
}

export function threads(): number {
  return availableParallelism();
}
