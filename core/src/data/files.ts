import type { Dirent } from 'node:fs';
import { readdir, realpath, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { DataSourceError } from './errors.js';

/** File extensions (lower case) that folder sources list as images. */
export const IMAGE_EXTENSIONS: readonly string[] = ['.png', '.jpg', '.jpeg', '.webp', '.tif', '.tiff'];
const EXTENSIONS = new Set(IMAGE_EXTENSIONS);
export const EXTENSION_LIST = 'png, jpg, jpeg, webp, tif, tiff';

/** Whether a file name has one of the image extensions (case-insensitive). */
export function isImageFile(name: string): boolean {
  return EXTENSIONS.has(extname(name).toLowerCase());
}

export function isHidden(name: string): boolean {
  return name.startsWith('.');
}

/** Code-unit order: unlike localeCompare it is the same on every machine and locale. */
export function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Entries of a folder sorted by name, with a clear error when it is missing or not a folder. */
export async function readFolder(path: string, layout: string): Promise<Dirent[]> {
  let entries: Dirent[];
  try {
    entries = await readdir(path, { withFileTypes: true });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const problem =
      code === 'ENOENT' ? 'does not exist' : code === 'ENOTDIR' ? 'is not a folder' : `cannot be read (${code ?? error})`;
    throw new DataSourceError(`Folder ${path} ${problem}; expected layout: ${layout}`, path, { cause: error });
  }
  return entries.sort((a, b) => compareNames(a.name, b.name));
}

/** What a directory entry is, following symbolic links (data sets are often assembled from links). */
async function kind(dir: string, entry: Dirent): Promise<'file' | 'dir' | 'other'> {
  if (entry.isFile()) return 'file';
  if (entry.isDirectory()) return 'dir';
  if (entry.isSymbolicLink()) {
    try {
      const target = await stat(join(dir, entry.name));
      return target.isFile() ? 'file' : target.isDirectory() ? 'dir' : 'other';
    } catch {
      // A dangling link is reported as a bad file when loaded, so skipBadFiles can list it.
      return isImageFile(entry.name) ? 'file' : 'other';
    }
  }
  return 'other';
}

/**
 * Every image file under `dir`, recursively, hidden files and folders ignored, sorted lexicographically by path,
 * segment by segment (the children of each folder in code-unit order of their names). Symbolic links are followed.
 * Throws a `DataSourceError` naming the folder and `layout` (the layout expected, for the message) when the folder
 * is missing or holds no image.
 */
export async function listImages(dir: string, layout: string): Promise<string[]> {
  const out: string[] = [];
  const visited = new Set<string>();
  const walk = async (folder: string): Promise<void> => {
    const entries = await readFolder(folder, layout);
    // Linked folders could form a cycle; each real folder is walked once.
    const real = await realpath(folder);
    if (visited.has(real)) return;
    visited.add(real);
    for (const entry of entries) {
      if (isHidden(entry.name)) continue;
      const what = await kind(folder, entry);
      const path = join(folder, entry.name);
      if (what === 'dir') await walk(path);
      else if (what === 'file' && isImageFile(entry.name)) out.push(path);
    }
  };
  await walk(dir);
  if (out.length === 0) {
    throw new DataSourceError(`No images (${EXTENSION_LIST}) found under ${dir}; expected layout: ${layout}`, dir);
  }
  return out;
}

/** Names of the non-hidden subfolders of `dir`, sorted, and the image files found directly in it. */
export async function subfolders(dir: string, layout: string): Promise<{ folders: string[]; images: string[] }> {
  const folders: string[] = [];
  const images: string[] = [];
  for (const entry of await readFolder(dir, layout)) {
    if (isHidden(entry.name)) continue;
    const what = await kind(dir, entry);
    if (what === 'dir') folders.push(entry.name);
    else if (what === 'file' && isImageFile(entry.name)) images.push(join(dir, entry.name));
  }
  return { folders, images };
}
