/**
 * Checks the params of every engine request before its handler runs, so that a client bug or a
 * hand-written request gets one clear error naming the field ("engine/ask: params.request.question
 * must be a string") instead of a crash deep in the session, and a bad engine/open never unloads
 * the model that is open.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { type MessageConnection, ResponseError } from 'vscode-jsonrpc';
import { EngineErrorCode, type EngineErrorData } from '../../common/engine-protocol';
import { QUANTIZATIONS } from '../../common/quantization';

/** Undefined when `value` is fine, else what is wrong with it, naming `at`. */
type Check = (value: unknown, at: string) => string | undefined;

const shown = (v: unknown) => (v === undefined ? 'nothing' : JSON.stringify(v)?.slice(0, 80) ?? String(v));

const string: Check = (v, at) => (typeof v === 'string' ? undefined : `${at} must be a string, got ${shown(v)}`);
const nonEmptyString: Check = (v, at) => (typeof v === 'string' && v.trim() !== '' ? undefined : `${at} must be a non-empty string, got ${shown(v)}`);
const absolutePath: Check = (v, at) =>
  typeof v === 'string' && (v.startsWith('/') || /^[A-Za-z]:[\\/]/.test(v) || v.startsWith('\\\\')) ? undefined : `${at} must be an absolute path, got ${shown(v)}`;
const integer = (min: number): Check => (v, at) => (Number.isSafeInteger(v) && (v as number) >= min ? undefined : `${at} must be a whole number ≥ ${min}, got ${shown(v)}`);
const number = (min: number, max: number): Check => (v, at) =>
  typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max ? undefined : `${at} must be a number from ${min} to ${max}, got ${shown(v)}`;
const oneOf = (values: readonly string[]): Check => (v, at) => (typeof v === 'string' && values.includes(v) ? undefined : `${at} must be one of ${values.join(', ')}, got ${shown(v)}`);

function optional(check: Check): Check {
  return (v, at) => (v === undefined ? undefined : check(v, at));
}

function array(item: Check, minLength = 0): Check {
  return (v, at) => {
    if (!Array.isArray(v)) return `${at} must be a list, got ${shown(v)}`;
    if (v.length < minLength) return `${at} must hold at least ${minLength} item${minLength === 1 ? '' : 's'}`;
    for (let i = 0; i < v.length; i++) {
      const e = item(v[i], `${at}[${i}]`);
      if (e) return e;
    }
    return undefined;
  };
}

function object(fields: Record<string, Check>): Check {
  return (v, at) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return `${at} must be an object, got ${shown(v)}`;
    const record = v as Record<string, unknown>;
    for (const [name, check] of Object.entries(fields)) {
      const e = check(record[name], `${at}.${name}`);
      if (e) return e;
    }
    return undefined;
  };
}

const packSettings = object({
  roots: array(absolutePath, 1),
  maxTokens: optional(integer(1)),
  include: optional(array(string)),
  exclude: optional(array(string)),
  maxFileBytes: optional(integer(1)),
});

const askRequest = object({
  question: string,
  selection: optional(object({ path: string, startLine: integer(1), endLine: integer(1), text: string })),
  history: optional(array(object({ role: oneOf(['user', 'assistant']), content: string }))),
  sampling: optional(
    object({
      temperature: optional(number(0, 100)),
      topP: optional(number(0, 1)),
      topK: optional(integer(0)),
      maxNewTokens: optional(integer(1)),
      seed: optional(integer(0)),
    }),
  ),
});

const askCommon = {
  textToken: string,
  workspace: optional(packSettings),
  progressToken: optional(string),
  ingestedToken: optional(string),
};

/** Params of each request that takes any; requests not listed here take none. */
const PARAMS: Record<string, Check> = {
  'engine/open': object({
    modelDir: optional(nonEmptyString),
    backend: oneOf(['auto', 'cuda', 'onnx', 'reference', 'remote']),
    cacheDir: absolutePath,
    memory: optional(
      object({
        contextTokens: optional(integer(1)),
        forks: optional(integer(0)),
        gpuMemory: optional(integer(1)),
        quantization: optional(oneOf(['auto', ...QUANTIZATIONS])),
      }),
    ),
    remote: optional(object({ url: nonEmptyString, model: nonEmptyString, apiKey: optional(string) })),
  }),
  'engine/ingest': object({ settings: packSettings, progressToken: string }),
  'engine/ask': object({ request: askRequest, ...askCommon }),
  'engine/askBatch': object({ requests: array(askRequest, 1), ...askCommon }),
  'engine/markStale': object({ paths: array(string) }),
};

/** What is wrong with the params of `method`, or undefined when they are fine or the method takes none. */
export function requestParamsError(method: string, params: unknown): string | undefined {
  const check = PARAMS[method];
  const e = check?.(params, 'params');
  return e && `${method}: ${e}`;
}

/**
 * For engine/open: a model folder that is not there, checked before the open model is released
 * (the session reports anything deeper once it loads).
 */
async function openTargetError(method: string, params: unknown): Promise<string | undefined> {
  const modelDir = method === 'engine/open' ? (params as { modelDir?: string }).modelDir : undefined;
  if (modelDir === undefined) return undefined;
  const found = await fs.stat(join(modelDir, 'config.json')).then((s) => s.isFile(), () => false);
  return found ? undefined : `engine/open: ${modelDir} is not a model folder (it has no config.json); the open model stays loaded. Point kimiLinear.modelPath (or --model) at a Kimi Linear checkpoint folder.`;
}

/**
 * The connection with every request handler behind the check: a request with bad params is
 * answered with a user error and its handler never runs.
 */
export function withCheckedParams(connection: MessageConnection): MessageConnection {
  return new Proxy(connection, {
    get(target, prop, receiver) {
      if (prop !== 'onRequest') return Reflect.get(target, prop, receiver) as unknown;
      return (type: { method: string; numberOfParams?: number } | string, handler: (...args: unknown[]) => unknown) => {
        const method = typeof type === 'string' ? type : type.method;
        if (typeof type === 'string' || !(method in PARAMS)) return target.onRequest(type as never, handler as never);
        // vscode-jsonrpc calls a handler with (token) when the request has no params, with
        // (...params, token) for positional params and with (params, token) otherwise.
        return target.onRequest(type as never, (async (...args: unknown[]) => {
          const params = args.length === 2 ? args[0] : args.length > 2 ? args.slice(0, -1) : undefined;
          const e = requestParamsError(method, params) ?? (await openTargetError(method, params));
          if (e) throw new ResponseError<EngineErrorData>(EngineErrorCode.User, e, { kind: 'user' });
          return handler(...args);
        }) as never);
      };
    },
  });
}
