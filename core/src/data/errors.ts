/** A file that exists (or was named) but cannot be decoded as an image. */
export class ImageDecodeError extends Error {
  override readonly name = 'ImageDecodeError';
  constructor(
    readonly path: string,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`Cannot decode image ${path}: ${reason}`, options);
  }
}

/** A data set whose files or folders are missing, malformed, or laid out differently from what the source expects. */
export class DataSourceError extends Error {
  override readonly name = 'DataSourceError';
  constructor(
    message: string,
    /** The file or folder the problem is about. */
    readonly path?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
