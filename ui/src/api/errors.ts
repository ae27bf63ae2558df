// Errors from the API as a person reads them: the envelope's message (and the fields it names), never raw JSON.

export interface FieldError {
  field: string;
  message: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly fields: FieldError[] = [],
  ) {
    super(message);
    this.name = 'ApiError';
  }

  /** One line for a banner: what went wrong, with the fields it names, and what a 403 means. */
  get readable(): string {
    const fields = this.fields.map((f) => `${f.field}: ${f.message}`).join('; ');
    let text = fields && !this.message.includes(fields) ? `${this.message} (${fields})` : this.message;
    if (this.status === 403) text = `Not allowed: ${text}. Your role may only read; ask an admin.`;
    if (this.status === 429) text = `Too many requests: ${text}`;
    return text;
  }
}

/** The ApiError an answer's body describes; a body that is not the envelope still gives a readable message. */
export function errorFrom(status: number, body: unknown, statusText = ''): ApiError {
  const error = (body as { error?: unknown } | null)?.error;
  if (error && typeof error === 'object') {
    const e = error as { code?: unknown; message?: unknown; details?: unknown; fields?: unknown };
    const list: { field?: unknown; message?: unknown }[] = Array.isArray(e.fields) ? e.fields : [];
    const fields = list
      .filter((f) => typeof f?.field === 'string' && typeof f?.message === 'string')
      .map((f) => ({ field: String(f.field), message: String(f.message) }));
    let message = typeof e.message === 'string' && e.message ? e.message : `request failed (HTTP ${status})`;
    if (typeof e.details === 'string' && e.details) message += `: ${e.details}`;
    return new ApiError(status, typeof e.code === 'string' ? e.code : 'ERROR', message, fields);
  }
  const what = statusText ? `${status} ${statusText}` : `${status}`;
  return new ApiError(status, 'HTTP_ERROR', `the gateway answered HTTP ${what} without an explanation`);
}

/** Any thrown thing as one readable line. */
export function describe(err: unknown): string {
  if (err instanceof ApiError) return err.readable;
  if (err instanceof TypeError) return `The gateway cannot be reached (${err.message}). Is it running?`;
  if (err instanceof Error) return err.message;
  return String(err);
}
