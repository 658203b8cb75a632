import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { reasonOf } from './atomic.js';

/** An output folder that cannot be written; the message names the folder and the cause. */
export class OutputFolderError extends Error {
  override readonly name = 'OutputFolderError';
}

/** The first existing path at or above `path`. */
async function existingAncestor(path: string): Promise<{ path: string; isDirectory: boolean }> {
  for (let p = path; ; p = dirname(p)) {
    try {
      return { path: p, isDirectory: (await stat(p)).isDirectory() };
    } catch {
      if (dirname(p) === p) return { path: p, isDirectory: true };
    }
  }
}

async function causeOf(error: unknown, dir: string): Promise<string> {
  const code = (error as NodeJS.ErrnoException).code ?? '';
  if (code === 'ENOTDIR' || code === 'EEXIST') {
    const blocker = await existingAncestor(dir);
    if (!blocker.isDirectory) return `${blocker.path} is a file, not a folder (${code})`;
  }
  return reasonOf(error);
}

/**
 * Creates `dir` if needed and proves that a file can be written in it, so that a command fails at its start (not
 * after hours of fitting) when its output folder is unusable. `what` names the folder for the user, e.g. `outputDir`.
 */
export async function ensureWritableFolder(dir: string, what: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (error) {
    throw new OutputFolderError(`${what} ${dir} cannot be created: ${await causeOf(error, dir)}`, { cause: error });
  }
  // Named like this project's temporary files, so that a probe left by a killed process is cleaned up with them.
  const probe = join(dir, `.write-test.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await writeFile(probe, '');
  } catch (error) {
    throw new OutputFolderError(`${what} ${dir} is not writable: ${await causeOf(error, dir)}`, { cause: error });
  } finally {
    await rm(probe, { force: true }).catch(() => undefined);
  }
}

/**
 * The temporary names of this project's atomic writes (core/src/io/atomic.ts): `.<name>.<pid>.<8 hex>.tmp`, and
 * `.<name>.<pid>.<8 hex>.tmp.old` for a folder being replaced.
 */
const TEMP_NAME = /^\.(.+)\.(\d+)\.([0-9a-f]{8})\.tmp(\.old)?$/;

/** A temporary file or folder older than this is stale even if a process with its pid is alive (pids are reused). */
export const STALE_TEMP_AGE_MS = 24 * 3600 * 1000;

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes what killed writes of this project left in `dir`: entries named like its temporary files whose process is
 * gone, or that are older than `maxAgeMs`. Nothing else is touched, and the current process's own are kept.
 * Returns the names removed.
 */
export async function removeStaleTemps(dir: string, options: { maxAgeMs?: number } = {}): Promise<string[]> {
  const maxAge = options.maxAgeMs ?? STALE_TEMP_AGE_MS;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const match = TEMP_NAME.exec(name);
    if (!match) continue;
    const pid = Number(match[2]);
    if (pid === process.pid) continue;
    const path = join(dir, name);
    let age: number;
    try {
      age = Date.now() - (await stat(path)).mtimeMs;
    } catch {
      continue;
    }
    if (processAlive(pid) && age <= maxAge) continue;
    await rm(path, { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}
