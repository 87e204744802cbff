/** Reading a request's JSON body with a size limit: too large is a 413, unparsable a 400. */
import type { IncomingMessage } from 'node:http';
import { ApiError } from './api-error';

function tooLarge(limit: number): ApiError {
  return new ApiError(413, `the request body is larger than the server's limit of ${limit} bytes (klc serve --max-body-bytes)`, 'invalid_request_error', 'request_too_large');
}

export async function readJsonBody(req: IncomingMessage, limit: number): Promise<unknown> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) throw tooLarge(limit);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw tooLarge(limit);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (!text.trim()) throw new ApiError(400, 'the request has no body; send a JSON object', 'invalid_request_error', 'invalid_json');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ApiError(400, `the request body is not valid JSON: ${(e as Error).message}`, 'invalid_request_error', 'invalid_json');
  }
}
