import type { Dirent } from 'node:fs';
import { readdir, realpath, stat } from 'node:fs/promises';
import { extname, join, sep } from 'node:path';
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

/** Whether `path` is `folder` or lies inside it (both real, absolute paths). */
function isWithin(path: string, folder: string): boolean {
  return path === folder || path.startsWith(folder.endsWith(sep) ? folder : folder + sep);
}

/**
 * What a directory entry is. Symbolic links are followed only while they stay inside `root` (the real path of the
 * folder being listed), so that a link cannot pull in another split's or class's images, or files from anywhere
 * else; a link to a folder that contains it is a loop. Both are errors naming the link, never silent.
 */
async function kind(dir: string, realDir: string, entry: Dirent, root: string): Promise<'file' | 'dir' | 'other'> {
  if (entry.isFile()) return 'file';
  if (entry.isDirectory()) return 'dir';
  if (!entry.isSymbolicLink()) return 'other';
  const link = join(dir, entry.name);
  let target: string;
  try {
    target = await realpath(link);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ELOOP') {
      throw new DataSourceError(`${link} is a symbolic link that resolves to itself through other links (a loop); remove it`, link, { cause: error });
    }
    // A dangling link is reported as a bad file when loaded, so skipBadFiles can list it.
    return isImageFile(entry.name) ? 'file' : 'other';
  }
  const info = await stat(target);
  const what = info.isFile() ? 'file' : info.isDirectory() ? 'dir' : 'other';
  if (what === 'other' || (what === 'file' && !isImageFile(entry.name))) return 'other';
  if (what === 'dir' && isWithin(realDir, target)) {
    throw new DataSourceError(`${link} is a symbolic link to ${target}, a folder that contains the link itself (a loop); remove it`, link);
  }
  if (!isWithin(target, root)) {
    throw new DataSourceError(
      `${link} is a symbolic link to ${target}, outside ${root}: links are followed only inside the folder being read, ` +
        'so that they cannot pull in images from elsewhere (another class, the test split); copy the files in, or name that folder itself',
      link,
    );
  }
  return what;
}

/**
 * Every image file under `dir`, recursively, hidden files and folders ignored, sorted lexicographically by path,
 * segment by segment (the children of each folder in code-unit order of their names). `dir` may itself be a link;
 * links inside it are followed while they stay inside it (a link elsewhere, or one that loops back, is a
 * `DataSourceError`), and a folder reached twice through links is listed once. Throws a `DataSourceError` naming
 * the folder and `layout` (the layout expected, for the message) when the folder is missing or holds no image.
 */
export async function listImages(dir: string, layout: string): Promise<string[]> {
  const out: string[] = [];
  const visited = new Set<string>();
  let root = '';
  const walk = async (folder: string): Promise<void> => {
    const entries = await readFolder(folder, layout);
    const real = await realpath(folder);
    root ||= real;
    if (visited.has(real)) return;
    visited.add(real);
    for (const entry of entries) {
      if (isHidden(entry.name)) continue;
      const what = await kind(folder, real, entry, root);
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

/**
 * Names of the non-hidden subfolders of `dir`, sorted, and the image files found directly in it; links are
 * followed only inside `dir`, as in `listImages`.
 */
export async function subfolders(dir: string, layout: string): Promise<{ folders: string[]; images: string[] }> {
  const folders: string[] = [];
  const images: string[] = [];
  const entries = await readFolder(dir, layout);
  const root = await realpath(dir);
  for (const entry of entries) {
    if (isHidden(entry.name)) continue;
    const what = await kind(dir, root, entry, root);
    if (what === 'dir') folders.push(entry.name);
    else if (what === 'file' && isImageFile(entry.name)) images.push(join(dir, entry.name));
  }
  return { folders, images };
}
