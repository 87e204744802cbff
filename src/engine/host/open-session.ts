/** The session an `open` request asks for: a local model, or the remote backend's server. */
import type { OpenParams } from '../../common/engine-protocol';
import { UserError } from '../../common/errors';
import { RemoteSession } from '../../remote/remote-session';
import type { RepoSession } from '../repo-session';
import { EngineSession } from '../session';

export async function openRepoSession(params: OpenParams, log: (line: string) => void): Promise<RepoSession> {
  if (params.backend !== 'remote') return EngineSession.open({ modelDir: params.modelDir, backend: params.backend, cacheDir: params.cacheDir, memory: params.memory, log });
  if (!params.remote?.url || !params.remote.model) {
    throw new UserError('the remote backend needs an endpoint URL and a model name: set kimiLinear.remote.endpoint and kimiLinear.remote.model (or klc --endpoint and --remote-model)');
  }
  return RemoteSession.open({ endpoint: params.remote, tokenizerDir: params.modelDir, log });
}
