import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createPreprocessor, stageProfile, type PreprocessSpec, type Resample, type RgbImage } from '@transformaly/core';
import { expectClose } from './fixtures/close.js';

interface GoldenImage {
  height: number;
  width: number;
  data: number[];
}
interface Golden {
  pillow: string;
  inputs: Record<string, GoldenImage>;
  cases: { input: string; height: number; width: number; resample: Resample; data: number[] }[];
}

const golden: Golden = JSON.parse(
  readFileSync(join(import.meta.dirname, 'golden', 'data', 'pil_resize.json'), 'utf8'),
);

function rgb(image: GoldenImage): RgbImage {
  return { width: image.width, height: image.height, data: Float32Array.from(image.data) };
}

function spec(size: [number, number], resample: Resample, mean = [0, 0, 0], std = [1, 1, 1]): PreprocessSpec {
  return { size, resample, mean: mean as PreprocessSpec['mean'], std: std as PreprocessSpec['std'] };
}

/** NCHW (one image) back to HWC, to compare with Pillow's HWC output. */
function planesToHwc(data: Float32Array, height: number, width: number, n = 0): Float32Array {
  const plane = height * width;
  const out = new Float32Array(plane * 3);
  for (let c = 0; c < 3; c++) {
    for (let p = 0; p < plane; p++) out[3 * p + c] = data[n * 3 * plane + c * plane + p];
  }
  return out;
}

describe.each(['worker', 'main'] as const)('resize matches Pillow (float images), on the %s thread', (thread) => {
  it.each(golden.cases.map((c) => [`${c.input} -> ${c.height}x${c.width} ${c.resample}`, c] as const))(
    '%s',
    async (_name, c) => {
      const input = rgb(golden.inputs[c.input]);
      const pre = createPreprocessor(spec([c.height, c.width], c.resample), { thread });
      const out = await pre.run([input]);
      await pre.dispose?.();
      expect(out.dims).toEqual([1, 3, c.height, c.width]);
      expectClose(planesToHwc(out.data, c.height, c.width), c.data, 1e-4, 'resized image');
    },
  );
});

describe('the preprocessing worker', () => {
  it('gives the same pixels as the main thread, runs batches concurrently in order, and leaves the images intact', async () => {
    const shared = new Float32Array(1000 + 9 * 7 * 3);
    for (let i = 0; i < shared.length; i++) shared[i] = (i % 11) / 11;
    // One image is a view into a larger buffer, as a source holding many images may hand out.
    const images: RgbImage[] = [
      { width: 9, height: 7, data: shared.subarray(1000) },
      { width: 5, height: 12, data: Float32Array.from({ length: 5 * 12 * 3 }, (_, i) => Math.sin(i)) },
    ];
    const before = images.map((image) => Float32Array.from(image.data));
    const s = spec([6, 6], 'bicubic', [0.5, 0.4, 0.3], [0.2, 0.3, 0.4]);
    const main = await createPreprocessor(s, { thread: 'main' }).run(images);
    const worker = createPreprocessor(s);
    stageProfile.start();
    const outs = await Promise.all([worker.run(images), worker.run([images[1]]), worker.run(images)]);
    const profile = stageProfile.stop();
    await worker.dispose?.();
    expect(outs[0]).toEqual(main);
    expect(outs[2]).toEqual(main);
    expect(outs[1].data).toEqual(main.data.subarray(3 * 36));
    expect(profile['images: preprocess (worker)']?.calls).toBe(3);
    images.forEach((image, i) => expect(image.data).toEqual(before[i]));
    expect(shared.length).toBe(1000 + 9 * 7 * 3);
    // After dispose, a new run starts a new thread.
    expect(await worker.run(images)).toEqual(main);
    await worker.dispose?.();
  });

  it('resizes every image of a batch of mixed sizes independently', async () => {
    const cases = golden.cases.filter((c) => c.height === 16 && c.width === 16 && c.resample === 'bicubic');
    expect(cases.length).toBe(1);
    const target = cases[0];
    const noise = rgb(golden.inputs[target.input]);
    const already = { width: 16, height: 16, data: Float32Array.from({ length: 16 * 16 * 3 }, (_, i) => (i % 7) / 7) };
    const pre = createPreprocessor(spec([16, 16], 'bicubic'));
    const out = await pre.run([already, noise, already]);
    expect(out.dims).toEqual([3, 3, 16, 16]);
    expectClose(planesToHwc(out.data, 16, 16, 1), target.data, 1e-4, 'resized noise');
    // An image already at the target size passes through untouched.
    expect(Array.from(planesToHwc(out.data, 16, 16, 0))).toEqual(Array.from(already.data));
    expect(Array.from(planesToHwc(out.data, 16, 16, 2))).toEqual(Array.from(already.data));
  });
});

describe('normalisation', () => {
  it('applies (x - mean) / std per channel in NCHW order', async () => {
    // 2x1 image: pixel 0 = (0.1, 0.5, 0.9), pixel 1 = (0.2, 0.4, 0.6).
    const image: RgbImage = { width: 2, height: 1, data: Float32Array.from([0.1, 0.5, 0.9, 0.2, 0.4, 0.6]) };
    const mean = [0.485, 0.456, 0.406];
    const std = [0.229, 0.224, 0.225];
    const out = await createPreprocessor(spec([1, 2], 'bilinear', mean, std)).run([image]);
    expect(out.dims).toEqual([1, 3, 1, 2]);
    const expected = [
      (0.1 - mean[0]) / std[0],
      (0.2 - mean[0]) / std[0],
      (0.5 - mean[1]) / std[1],
      (0.4 - mean[1]) / std[1],
      (0.9 - mean[2]) / std[2],
      (0.6 - mean[2]) / std[2],
    ];
    expectClose(out.data, expected, 1e-6, 'normalised pixels');
  });

  it('normalises after resizing: a constant image stays constant under every filter', async () => {
    const image: RgbImage = {
      width: 13,
      height: 7,
      data: Float32Array.from({ length: 13 * 7 * 3 }, (_, i) => [0.25, 0.5, 0.75][i % 3]),
    };
    for (const resample of ['nearest', 'bilinear', 'bicubic'] as const) {
      const out = await createPreprocessor(spec([5, 20], resample, [0.5, 0.5, 0.5], [0.5, 0.25, 0.125])).run([image]);
      const plane = 5 * 20;
      const want = [(0.25 - 0.5) / 0.5, (0.5 - 0.5) / 0.25, (0.75 - 0.5) / 0.125];
      expectClose(out.data, want.flatMap((v) => new Array(plane).fill(v)), 1e-6, `${resample}: constant planes`);
    }
  });

  it('gives an empty batch an empty tensor', async () => {
    const out = await createPreprocessor(spec([4, 4], 'bilinear')).run([]);
    expect(out.dims).toEqual([0, 3, 4, 4]);
    expect(out.data.length).toBe(0);
  });
});

describe('spec and input checks', () => {
  it('rejects a bad spec naming the field', () => {
    expect(() => createPreprocessor(spec([0, 4], 'bilinear'))).toThrow(/size/);
    expect(() => createPreprocessor(spec([4, 4], 'lanczos' as Resample))).toThrow(/resample/);
    expect(() => createPreprocessor(spec([4, 4], 'bilinear', [0, 0, 0], [1, 0, 1]))).toThrow(/std/);
    expect(() => createPreprocessor(spec([4, 4], 'bilinear', [0, Number.NaN, 0]))).toThrow(/mean/);
  });

  it('rejects an image whose data does not match its size', async () => {
    const pre = createPreprocessor(spec([4, 4], 'bilinear'));
    await expect(pre.run([{ width: 3, height: 3, data: new Float32Array(26) }])).rejects.toThrow(/image 0/);
  });
});
