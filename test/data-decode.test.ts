import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { batches, createPreprocessor, decodeImage, FolderSource, ImageDecodeError, type Batch } from '@transformaly/core';
import { blackPng, pattern, tempDir, writeImage } from './fixtures/data/images.js';
import { expectClose } from './fixtures/close.js';

const tmp = tempDir('decode');
afterAll(() => tmp.remove());

const at = (name: string) => join(tmp.path, name);
const rgb8 = pattern(5, 3);

beforeAll(async () => {
  await writeImage(at('rgb.png'), rgb8, 'png');
  await writeImage(at('rgb.webp'), rgb8, 'webp');
  await writeImage(at('rgb.tiff'), rgb8, 'tiff');
  await writeImage(at('rgb.tif'), rgb8, 'tiff');
  // JPEG is lossy: a flat colour survives within a grey level or two.
  const flat = new Uint8Array(8 * 8 * 3);
  for (let i = 0; i < flat.length; i += 3) flat.set([200, 120, 40], i);
  await writeImage(at('flat.jpg'), { width: 8, height: 8, channels: 3, data: flat }, 'jpeg');
  await writeImage(at('gray.png'), { width: 2, height: 2, channels: 1, data: Uint8Array.from([0, 64, 128, 255]) }, 'png');
  await writeImage(
    at('rgba.png'),
    { width: 2, height: 1, channels: 4, data: Uint8Array.from([200, 100, 50, 0, 10, 20, 30, 128]) },
    'png',
  );
  await writeImage(
    at('gray-alpha.png'),
    { width: 2, height: 1, channels: 2, data: Uint8Array.from([90, 0, 180, 255]) },
    'png',
  );
  await writeImage(
    at('rgb16.png'),
    { width: 2, height: 1, channels: 3, data: Uint16Array.from([0, 1000, 40000, 65535, 1, 257]) },
    'png',
  );
  await writeImage(at('gray16.png'), { width: 3, height: 1, channels: 1, data: Uint16Array.from([1, 1000, 65535]) }, 'png');
  await writeImage(
    at('rgba16.tiff'),
    { width: 1, height: 2, channels: 4, data: Uint16Array.from([300, 600, 900, 0, 65535, 12345, 7, 65535]) },
    'tiff',
  );
  writeFileSync(at('garbage.png'), 'this is not an image');
  const png = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#ff8800' } }).png().toBuffer();
  writeFileSync(at('truncated.png'), png.subarray(0, png.length - 40));
  blackPng(at('bomb.png'), 16000, 16000);
});

describe('decodeImage', () => {
  it.each(['rgb.png', 'rgb.webp', 'rgb.tiff', 'rgb.tif'])('decodes 8-bit RGB %s exactly to [0, 1]', async (name) => {
    const image = await decodeImage(at(name));
    expect(image.width).toBe(5);
    expect(image.height).toBe(3);
    expect(image.data).toBeInstanceOf(Float32Array);
    expect(Array.from(image.data)).toEqual(Array.from(rgb8.data, (v) => Math.fround(v / 255)));
  });

  it('decodes JPEG', async () => {
    const image = await decodeImage(at('flat.jpg'));
    expect([image.width, image.height, image.data.length]).toEqual([8, 8, 8 * 8 * 3]);
    // Within 3 grey levels of the flat colour: 3/200 of the largest channel value.
    const flat = Array.from({ length: 8 * 8 }, () => [200 / 255, 120 / 255, 40 / 255]).flat();
    expectClose(image.data, flat, 3 / 200, 'decoded JPEG');
  });

  it('expands grayscale to three equal channels', async () => {
    expect((await sharp(at('gray.png')).metadata()).channels).toBe(1);
    const image = await decodeImage(at('gray.png'));
    expect(Array.from(image.data)).toEqual([0, 0, 0, 64, 64, 64, 128, 128, 128, 255, 255, 255].map((v) => Math.fround(v / 255)));
  });

  it('drops alpha without premultiplying: a transparent pixel keeps its stored colour', async () => {
    const image = await decodeImage(at('rgba.png'));
    expect(Array.from(image.data)).toEqual([200, 100, 50, 10, 20, 30].map((v) => Math.fround(v / 255)));
    const grayAlpha = await decodeImage(at('gray-alpha.png'));
    expect(Array.from(grayAlpha.data)).toEqual([90, 90, 90, 180, 180, 180].map((v) => Math.fround(v / 255)));
  });

  it('keeps 16-bit depth, scaling by 65535', async () => {
    expect((await sharp(at('rgb16.png')).metadata()).depth).toBe('ushort');
    const image = await decodeImage(at('rgb16.png'));
    // 1000 and 1 would collapse to 8-bit 4 and 0 if the file were read at 8 bits.
    expect(Array.from(image.data)).toEqual([0, 1000, 40000, 65535, 1, 257].map((v) => Math.fround(v / 65535)));
    const gray = await decodeImage(at('gray16.png'));
    expect(Array.from(gray.data)).toEqual([1, 1, 1, 1000, 1000, 1000, 65535, 65535, 65535].map((v) => Math.fround(v / 65535)));
    const tiff = await decodeImage(at('rgba16.tiff'));
    expect(Array.from(tiff.data)).toEqual([300, 600, 900, 65535, 12345, 7].map((v) => Math.fround(v / 65535)));
  });

  it.each(['garbage.png', 'truncated.png', 'missing.png'])('throws ImageDecodeError with the path for %s', async (name) => {
    const error = await decodeImage(at(name)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ImageDecodeError);
    const decodeError = error as ImageDecodeError;
    expect(decodeError.path).toBe(at(name));
    expect(decodeError.reason.length).toBeGreaterThan(0);
    expect(decodeError.message).toContain(at(name));
    expect(decodeError.message).toContain(decodeError.reason);
  });

  it("decodes a file's bytes exactly as the file, and names them in errors as told", async () => {
    for (const name of ['rgb.png', 'rgb.webp', 'rgb.tiff', 'flat.jpg', 'rgb16.png']) {
      expect(await decodeImage(readFileSync(at(name)))).toEqual(await decodeImage(at(name)));
    }
    const refusal = (bytes: Buffer, name?: string) =>
      decodeImage(bytes, { name }).then(
        () => {
          throw new Error('expected the image to be refused');
        },
        (e: unknown) => e as ImageDecodeError,
      );
    const truncated = await refusal(readFileSync(at('truncated.png')), 'upload.png');
    expect(truncated).toBeInstanceOf(ImageDecodeError);
    expect(truncated.path).toBe('upload.png');
    const bomb = await refusal(readFileSync(at('bomb.png')));
    expect(bomb.message).toMatch(/^Cannot decode image \(image bytes\): 16000 x 16000 = 256 megapixels, more than the maxPixels limit/);
  });
});

describe('the pixel limit', () => {
  const refusal = async (promise: Promise<unknown>) =>
    promise.then(
      () => {
        throw new Error('expected the image to be refused');
      },
      (e: unknown) => e as ImageDecodeError,
    );

  it('refuses a small file that declares 16000 x 16000 pixels, from its header, naming the file', async () => {
    const error = await refusal(decodeImage(at('bomb.png')));
    expect(error).toBeInstanceOf(ImageDecodeError);
    expect(error.path).toBe(at('bomb.png'));
    expect(error.message).toBe(
      `Cannot decode image ${at('bomb.png')}: 16000 x 16000 = 256 megapixels, more than the maxPixels limit of 50 megapixels ` +
        'per image, which bounds the memory decoding takes (raise it if this image is meant to be read)',
    );
  });

  it('is an option: an image of exactly maxPixels decodes, one pixel fewer refuses it', async () => {
    // rgb.png is 5 x 3 = 15 pixels.
    expect((await decodeImage(at('rgb.png'), { maxPixels: 15 })).data.length).toBe(45);
    const error = await refusal(decodeImage(at('rgb.png'), { maxPixels: 14 }));
    expect(error.reason).toMatch(/^5 x 3 = 15 pixels, more than the maxPixels limit of 14 pixels per image/);
  });

  it("is a folder source's option; with skipBadFiles the image is skipped and listed with the reason", async () => {
    await writeImage(at('ds/train/cat/small.png'), pattern(4, 4), 'png');
    await writeImage(at('ds/train/cat/wide.png'), pattern(8, 4), 'png');
    await writeImage(at('ds/test/cat/t.png'), pattern(4, 4), 'png');
    const source = new FolderSource({ root: at('ds'), maxPixels: 16 });
    const items = await source.items('train');
    const wide = await refusal(items[1].load());
    expect(wide.message).toContain(at('ds/train/cat/wide.png'));
    const preprocessor = createPreprocessor({ size: [2, 2], resample: 'bilinear', mean: [0, 0, 0], std: [1, 1, 1] });
    const seen: Batch[] = [];
    for await (const batch of batches(items, 2, preprocessor, { skipBadFiles: true })) seen.push(batch);
    expect(seen.flatMap((b) => b.items.map((i) => i.id))).toEqual([at('ds/train/cat/small.png')]);
    expect(seen.flatMap((b) => b.skipped)).toEqual([
      { id: at('ds/train/cat/wide.png'), reason: expect.stringMatching(/^8 x 4 = 32 pixels, more than the maxPixels limit of 16 pixels/) },
    ]);
    expect(() => new FolderSource({ root: at('ds'), maxPixels: 0 })).toThrow("FolderSource: option 'maxPixels' must be a positive integer, got 0");
  });
});
