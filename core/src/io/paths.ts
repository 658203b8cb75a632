import { isAbsolute, join, relative, resolve, sep } from 'node:path';

/** A name that stays inside its folder: letters, digits, '.', '_' or '-', not starting with '.' (so never `..`). */
export const SAFE_NAME = '^[A-Za-z0-9][A-Za-z0-9._-]*$';
const safeName = new RegExp(SAFE_NAME);

/** A path built from user or remote input that would leave the folder it belongs in. */
export class UnsafePathError extends Error {
  override readonly name = 'UnsafePathError';
}

/**
 * Checks one path segment given by a user or a remote (a run id, a file name from a listing): it must be a
 * `SAFE_NAME` of at most 255 characters. `what` names the input in the error, e.g. `--run-id`.
 */
export function checkSafeName(value: string, what: string): string {
  if (typeof value !== 'string' || !safeName.test(value) || value.length > 255) {
    throw new UnsafePathError(
      `${what} ${JSON.stringify(value)} is not a usable name: use letters, digits, '.', '_' or '-', not starting with '.' ` +
        '(no path separators, no "..")',
    );
  }
  return value;
}

/**
 * `join(root, ...parts)`, refused unless the result lies inside `root` (or is `root` itself). Every path joined from
 * user or remote input goes through here, so that no input can name a place outside the folder it belongs in.
 */
export function resolveInside(root: string, ...parts: string[]): string {
  const base = resolve(root);
  const path = resolve(join(base, ...parts));
  const rel = relative(base, path);
  if (rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)) {
    throw new UnsafePathError(`refusing the path ${JSON.stringify(join(...parts))}: it leaves ${base}`);
  }
  return path;
}
