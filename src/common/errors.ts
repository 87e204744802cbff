/**
 * An error meant for the person running the tool: the message says what failed, which file or
 * field, and what to do about it. The CLI prints it as one line; the extension shows it as is.
 * Anything that is not a UserError is a bug and is reported with its stack.
 */
export class UserError extends Error {
  constructor(message: string, readonly file?: string) {
    super(message);
    this.name = 'UserError';
  }
}

export function isUserError(e: unknown): e is UserError {
  return e instanceof Error && e.name === 'UserError';
}
