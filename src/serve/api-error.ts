/**
 * Errors of the OpenAI-compatible server: each carries the HTTP status and the `error` object that
 * OpenAI's API returns, so clients (the openai package, vLLM-aware tools) classify them as usual.
 */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: string = 'invalid_request_error',
    readonly code: string | null = null,
    readonly param: string | null = null,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** A 400 about one field of the request body. */
export function badField(param: string, message: string): ApiError {
  return new ApiError(400, message, 'invalid_request_error', 'invalid_value', param);
}
