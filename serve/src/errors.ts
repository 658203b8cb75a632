/** An error answered with its status and message (Fastify reads `statusCode`); `headers` go with it (Retry-After). */
export class ServeError extends Error {
  override readonly name = 'ServeError';
  constructor(
    readonly statusCode: number,
    message: string,
    readonly headers: Record<string, string> = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
