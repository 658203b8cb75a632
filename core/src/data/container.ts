// Reading whole container files (IDX, CIFAR binary) into memory once.
import { readFile, stat } from 'node:fs/promises';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { DataSourceError } from './errors.js';

const gunzipAsync = promisify(gunzip);

/** Reads a file, gunzipping it when it starts with the gzip magic bytes (whatever its name says). */
export async function readMaybeGzipped(path: string, what: string): Promise<Uint8Array> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const problem = code === 'ENOENT' ? 'does not exist' : `cannot be read (${code ?? error})`;
    throw new DataSourceError(`${what} ${path} ${problem}`, path, { cause: error });
  }
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      bytes = await gunzipAsync(bytes);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new DataSourceError(`${what} ${path} is gzip-compressed but cannot be decompressed: ${reason}`, path, {
        cause: error,
      });
    }
  }
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/** A lazily started load that is kept once it succeeds and retried after a failure. */
export class Cached<T> {
  private pending?: Promise<T>;
  constructor(private readonly start: () => Promise<T>) {}

  get(): Promise<T> {
    if (!this.pending) {
      const pending = this.start();
      this.pending = pending;
      pending.catch(() => {
        if (this.pending === pending) this.pending = undefined;
      });
    }
    return this.pending;
  }
}
