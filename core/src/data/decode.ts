import sharp from 'sharp';
import type { RgbImage } from '../types.js';
import { ImageDecodeError } from './errors.js';

/**
 * Decodes a PNG, JPEG, WebP or TIFF file to RGB floats in [0, 1], HWC.
 *
 * - Grayscale is expanded to three equal channels.
 * - An alpha channel is dropped as stored: colour values are neither premultiplied nor composited onto a
 *   background, so a fully transparent pixel keeps whatever colour the file holds (what `PIL.Image.convert('RGB')`
 *   does too).
 * - 8-bit samples are divided by 255, 16-bit samples by 65535 (16-bit files are read at full depth).
 * - EXIF orientation is not applied, as PIL does not apply it either; the stored pixel grid is returned.
 * - Multi-page files (TIFF, animated WebP) give their first page.
 *
 * Throws `ImageDecodeError` (with the path and libvips' reason) for missing, truncated or undecodable files, and
 * for sample formats other than 8 and 16 bits (e.g. float TIFF).
 */
export async function decodeImage(path: string): Promise<RgbImage> {
  try {
    // 'truncated' rejects cut-off files (PIL also refuses them) while tolerating the benign libjpeg warnings that
    // many real-world photos trigger.
    const pipeline = sharp(path, { failOn: 'truncated' });
    const meta = await pipeline.metadata();
    const sixteenBit = meta.depth === 'ushort';
    if (!sixteenBit && meta.depth !== 'uchar') {
      throw new ImageDecodeError(path, `unsupported sample format '${meta.depth}' (8- and 16-bit unsigned images are supported)`);
    }
    // Without an explicit 16-bit colourspace libvips would reduce 16-bit input to 8 bits on the way to sRGB.
    const { data, info } = await pipeline
      .toColourspace(sixteenBit ? 'rgb16' : 'srgb')
      .removeAlpha()
      .raw({ depth: sixteenBit ? 'ushort' : 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) {
      throw new ImageDecodeError(path, `decoded to ${info.channels} channels, expected 3`);
    }
    const count = info.width * info.height * 3;
    const out = new Float32Array(count);
    if (sixteenBit) {
      // A Uint16Array view needs an even byte offset; copy in the rare case the raw buffer does not start on one.
      const aligned = data.byteOffset % 2 === 0 ? data : new Uint8Array(data);
      const samples = new Uint16Array(aligned.buffer, aligned.byteOffset, count);
      for (let i = 0; i < count; i++) out[i] = samples[i] / 65535;
    } else {
      for (let i = 0; i < count; i++) out[i] = data[i] / 255;
    }
    return { width: info.width, height: info.height, data: out };
  } catch (error) {
    if (error instanceof ImageDecodeError) throw error;
    const reason = error instanceof Error ? error.message : String(error);
    throw new ImageDecodeError(path, reason, { cause: error });
  }
}
