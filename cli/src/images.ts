import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { decodeImage, isImageFile, listImages, type DecodeOptions, type ImageItem } from '@transformaly/core';

/**
 * Image files named on the command line, folders searched recursively (links followed only inside each folder), in
 * lexicographic order of their paths. `options.maxPixels` bounds each image's size, checked before decoding.
 */
export async function imageItemsFromArgs(inputs: string[], cwd = process.cwd(), options: DecodeOptions = {}): Promise<ImageItem[]> {
  const paths: string[] = [];
  for (const input of inputs) {
    const path = resolve(cwd, input);
    let info;
    try {
      info = await stat(path);
    } catch {
      throw new Error(`${input}: no such file or folder`);
    }
    if (info.isDirectory()) paths.push(...(await listImages(path, 'a folder of images (png, jpg, webp, tif)')));
    else if (isImageFile(path)) paths.push(path);
    else throw new Error(`${input}: not an image file (expected png, jpg, jpeg, webp, tif or tiff)`);
  }
  const unique = [...new Set(paths)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return unique.map((path) => ({ id: path, label: '', load: () => decodeImage(path, options) }));
}
