import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm, type FileHandle } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';

/** A file or folder that could not be written; names it, and says how far the write got. */
export class FileWriteError extends Error {
  override readonly name = 'FileWriteError';
  /** The errno code of the cause (ENOSPC, EACCES, ...), when there was one. */
  readonly code: string | undefined;
  constructor(
    /** The file or folder that was being written (the final name, not the temporary one). */
    readonly path: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`cannot write ${path}: ${detail}`, options);
    this.code = (options?.cause as NodeJS.ErrnoException | undefined)?.code;
  }
}

const ERRNO_TEXT: Record<string, string> = {
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  EFBIG: 'file too large for the file system or the process limit',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  EIO: 'input/output error',
};

/** A file system error in words, with its code: `permission denied (EACCES)`. */
export function reasonOf(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code && ERRNO_TEXT[code]) return `${ERRNO_TEXT[code]} (${code})`;
  return error instanceof Error ? error.message : String(error);
}

/**
 * Writes all of `bytes` at `position`, looping over short writes (a write may take fewer bytes than offered when
 * the disk fills up or a limit is reached; the next attempt then reports why). A write that takes no byte at all
 * is an error too, so this never spins. Returns the position after the last byte.
 */
export async function writeFully(handle: FileHandle, bytes: Uint8Array, position: number): Promise<number> {
  let done = 0;
  while (done < bytes.byteLength) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.byteLength - done, position + done);
    if (!(bytesWritten > 0)) throw new Error(`the write stopped after ${done} of ${bytes.byteLength} bytes`);
    done += bytesWritten;
  }
  return position + done;
}

/**
 * Flushes a folder's entries (a rename inside it) to the device. Not every platform can open a folder for this
 * (Windows cannot); there the rename is as durable as the file system makes it.
 */
async function syncDir(dir: string): Promise<void> {
  let handle: FileHandle;
  try {
    handle = await open(dir, 'r');
  } catch {
    return;
  }
  try {
    await handle.sync();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'EPERM' && code !== 'EBADF' && code !== 'ENOTSUP') throw error;
  } finally {
    await handle.close();
  }
}

function tempName(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

async function makeParent(path: string): Promise<void> {
  try {
    await mkdir(dirname(path), { recursive: true });
  } catch (error) {
    throw new FileWriteError(path, `cannot create its folder ${dirname(path)}: ${reasonOf(error)}`, { cause: error });
  }
}

/**
 * Writes `data` to `path` so that a reader sees either the old file or the whole new one, never a part: the bytes
 * go to a temporary file beside it, every write's byte count is checked, the file is flushed to the device, and
 * only then renamed over `path` (and the folder flushed, so the rename survives a crash too). On any failure the
 * temporary file is removed, `path` is left as it was, and a `FileWriteError` names `path`.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string | Iterable<Uint8Array>): Promise<void> {
  await makeParent(path);
  const tmp = tempName(path);
  const chunks = typeof data === 'string' ? [Buffer.from(data, 'utf8')] : data instanceof Uint8Array ? [data] : [...data];
  const total = chunks.reduce((sum, chunk) => sum + chunk.byteLength, 0);
  let handle: FileHandle | undefined;
  try {
    handle = await open(tmp, 'w');
    let position = 0;
    for (const chunk of chunks) position = await writeFully(handle, chunk, position);
    await handle.sync();
    await handle.close();
    handle = undefined;
    await rename(tmp, path);
  } catch (error) {
    // What reached the file tells how far it got (a short write leaves part of a chunk).
    const written = handle ? await handle.stat().then((s) => s.size, () => undefined) : undefined;
    await handle?.close().catch(() => undefined);
    await rm(tmp, { force: true }).catch(() => undefined);
    const progress = written === undefined ? '' : ` (${written} of ${total} bytes written)`;
    throw new FileWriteError(path, `${reasonOf(error)}${progress}; ${path} was left as it was`, { cause: error });
  }
  await syncDir(dirname(path));
}

/**
 * Builds a folder under a temporary name, then renames it into place, replacing an older folder of the same name.
 * `fill` writes the folder's contents (with `writeFileAtomic`, so each file is complete and flushed).
 */
export async function writeDirAtomic(path: string, fill: (tmpDir: string) => Promise<void>): Promise<void> {
  await makeParent(path);
  const tmp = tempName(path);
  try {
    await mkdir(tmp);
  } catch (error) {
    throw new FileWriteError(path, reasonOf(error), { cause: error });
  }
  try {
    await fill(tmp);
    await syncDir(tmp);
  } catch (error) {
    await rm(tmp, { recursive: true, force: true });
    throw error;
  }
  const old = `${tmp}.old`;
  let moved = false;
  try {
    await rename(path, old);
    moved = true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      await rm(tmp, { recursive: true, force: true });
      throw new FileWriteError(path, `cannot move the older folder aside: ${reasonOf(error)}`, { cause: error });
    }
  }
  try {
    await rename(tmp, path);
  } catch (error) {
    // Put the older folder back rather than leave nothing under `path`.
    if (moved) await rename(old, path).catch(() => undefined);
    await rm(tmp, { recursive: true, force: true });
    throw new FileWriteError(path, reasonOf(error), { cause: error });
  }
  await syncDir(dirname(path));
  if (moved) await rm(old, { recursive: true, force: true });
}
