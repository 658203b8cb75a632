import sharp from 'sharp';
import type { RgbImage } from '../types.js';
import { ImageDecodeError } from './errors.js';

/**
 * The default limit on an image's pixels (width x height). Decoding takes 15 bytes per pixel at the peak (8-bit RGB
 * from libvips plus the float32 copy), so 50 megapixels is about 750 MB per image, and a batch decodes several at a
 * time; a small file can declare far more (a 31 KB PNG can say 16000 x 16000).
 */
export const DEFAULT_MAX_PIXELS = 50_000_000;

export interface DecodeOptions {
  /** Images with more pixels than this (from their header, before decoding) are refused; default `DEFAULT_MAX_PIXELS`. */
  maxPixels?: number;
  /** How errors name an image given as bytes (e.g. an upload's file name); default `(image bytes)`. */
  name?: string;
}

/**
 * Decodes a PNG, JPEG, WebP or TIFF file (a path, or the file's bytes) to RGB floats in [0, 1], HWC. The bytes of a
 * file decode exactly as the file does.
 *
 * - Grayscale is expanded to three equal channels.
 * - An alpha channel is dropped as stored: colour values are neither premultiplied nor composited onto a
 *   background, so a fully transparent pixel keeps whatever colour the file holds (what `PIL.Image.convert('RGB')`
 *   does too).
 * - 8-bit samples are divided by 255, 16-bit samples by 65535 (16-bit files are read at full depth).
 * - EXIF orientation is not applied, as PIL does not apply it either; the stored pixel grid is returned.
 * - Multi-page files (TIFF, animated WebP) give their first page.
 *
 * Throws `ImageDecodeError` (with the path and libvips' reason) for missing, truncated or undecodable files, for
 * sample formats other than 8 and 16 bits (e.g. float TIFF), and for images whose header declares more than
 * `maxPixels` pixels (checked before any pixel is decoded).
 */
export async function decodeImage(source: string | Uint8Array, options: DecodeOptions = {}): Promise<RgbImage> {
  const maxPixels = options.maxPixels ?? DEFAULT_MAX_PIXELS;
  const path = typeof source === 'string' ? source : (options.name ?? '(image bytes)');
  try {
    // 'truncated' rejects cut-off files (PIL also refuses them) while tolerating the benign libjpeg warnings that
    // many real-world photos trigger. sharp's own pixel limit is off: the check below gives the clearer message.
    const pipeline = sharp(source, { failOn: 'truncated', limitInputPixels: false });
    // The header alone: the size is checked before libvips allocates anything for the pixels.
    const meta = await pipeline.metadata();
    const pixels = (meta.width ?? 0) * (meta.height ?? 0);
    if (pixels > maxPixels) {
      throw new ImageDecodeError(
        path,
        `${meta.width} x ${meta.height} = ${formatPixels(pixels)}, more than the maxPixels limit of ${formatPixels(maxPixels)} per ` +
          'image, which bounds the memory decoding takes (raise it if this image is meant to be read)',
      );
    }
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

function formatPixels(pixels: number): string {
  return pixels >= 1e6 ? `${Number((pixels / 1e6).toPrecision(4))} megapixels` : `${pixels} pixels`;
}
