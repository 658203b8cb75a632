import { decodeImage, ImageDecodeError, type Preprocessor, type Tensor } from '@transformaly/core';
import { ServeError } from './errors.js';

/**
 * The media types of the image formats the service decodes. The declared type only admits a body: the format is
 * read from the bytes (`sniffFormat`), so a PNG declared as image/jpeg is decoded as the PNG it is.
 */
export const IMAGE_MEDIA_TYPES = ['image/png', 'image/jpeg', 'image/webp', 'image/tiff'];

/** Media types a raw body or a file part may have: an image type, or octet-stream for "find out from the bytes". */
export const RAW_MEDIA_TYPES = [...IMAGE_MEDIA_TYPES, 'application/octet-stream'];

export type ImageFormat = 'png' | 'jpeg' | 'webp' | 'tiff';

/** The format of an image file from its first bytes (its signature); undefined for anything else. */
export function sniffFormat(bytes: Uint8Array): ImageFormat | undefined {
  const starts = (...sig: number[]) => bytes.length >= sig.length && sig.every((b, i) => bytes[i] === b);
  if (starts(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)) return 'png';
  if (starts(0xff, 0xd8, 0xff)) return 'jpeg';
  if (starts(0x52, 0x49, 0x46, 0x46) && bytes.length >= 12 && String.fromCharCode(...bytes.subarray(8, 12)) === 'WEBP') return 'webp';
  if (starts(0x49, 0x49, 0x2a, 0x00) || starts(0x4d, 0x4d, 0x00, 0x2a) || starts(0x49, 0x49, 0x2b, 0x00) || starts(0x4d, 0x4d, 0x00, 0x2b)) return 'tiff';
  return undefined;
}

export interface DecodedImage {
  /** The image preprocessed for the backbone, [1, 3, H, W]. */
  pixels: Tensor;
  format: ImageFormat;
  width: number;
  height: number;
  decodeMs: number;
}

/**
 * Decodes uploaded images as `transformaly score` decodes files (the same decoder, the same pixel limit checked from
 * the header before any pixel is decoded), at most `concurrency` at a time: each decode may take up to 15 bytes per
 * pixel of the limit. Anything that is not a whole PNG, JPEG, WebP or TIFF image within the limit is a 400.
 */
export class ImageDecoder {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    private readonly preprocessor: Preprocessor,
    private readonly maxPixels: number,
    private readonly concurrency: number,
  ) {}

  async decode(bytes: Uint8Array, name: string): Promise<DecodedImage> {
    if (bytes.length === 0) throw new ServeError(400, `${name}: empty; expected a PNG, JPEG, WebP or TIFF image`);
    const format = sniffFormat(bytes);
    if (!format) throw new ServeError(400, `${name}: not a PNG, JPEG, WebP or TIFF image (its first bytes are ${hex(bytes.subarray(0, 8))})`);
    await this.acquire();
    try {
      const start = performance.now();
      const image = await decodeImage(bytes, { maxPixels: this.maxPixels, name });
      const pixels = await this.preprocessor.run([image]);
      return { pixels, format, width: image.width, height: image.height, decodeMs: performance.now() - start };
    } catch (error) {
      if (error instanceof ImageDecodeError) throw new ServeError(400, `${name}: cannot decode this ${format.toUpperCase()} image: ${error.reason}`, {}, { cause: error });
      throw error;
    } finally {
      this.releaseSlot();
    }
  }

  private async acquire(): Promise<void> {
    if (this.active < this.concurrency) {
      this.active++;
      return;
    }
    // The slot is handed over by releaseSlot, so `active` stays counted.
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  private releaseSlot(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.active--;
  }
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ');
}
