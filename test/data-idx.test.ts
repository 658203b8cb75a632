import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { compileSchema, DataSourceError, FASHION_MNIST_CLASSES, IdxSource, idxSourceSchema } from '@transformaly/core';
import { tempDir } from './fixtures/data/images.js';

const FASHION = '/usr/share/datasets/fashion-mnist';

const tmp = tempDir('idx');
afterAll(() => tmp.remove());

function idxImages(count: number, rows: number, cols: number, fill: (i: number) => number, magic = 0x00000803): Uint8Array {
  const bytes = new Uint8Array(16 + count * rows * cols);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, magic);
  view.setUint32(4, count);
  view.setUint32(8, rows);
  view.setUint32(12, cols);
  for (let i = 0; i < count * rows * cols; i++) bytes[16 + i] = fill(i);
  return bytes;
}

function idxLabels(labels: number[], magic = 0x00000801): Uint8Array {
  const bytes = new Uint8Array(8 + labels.length);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, magic);
  view.setUint32(4, labels.length);
  bytes.set(labels, 8);
  return bytes;
}

/** Writes a folder holding the given files. */
function idxFolder(name: string, files: Record<string, Uint8Array>): string {
  const dir = join(tmp.path, name);
  mkdirSync(dir, { recursive: true });
  for (const [file, bytes] of Object.entries(files)) writeFileSync(join(dir, file), bytes);
  return dir;
}

async function errorOf(promise: Promise<unknown>): Promise<Error> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: Error) => e,
  );
}

describe('IdxSource on the real Fashion-MNIST files', () => {
  const source = new IdxSource({ dir: FASHION, classNames: 'fashion-mnist' });

  it('lists 60000 train and 10000 test items with balanced classes', async () => {
    expect(await source.classes()).toEqual([...FASHION_MNIST_CLASSES]);
    const train = await source.items('train');
    const test = await source.items('test');
    expect(train.length).toBe(60000);
    expect(test.length).toBe(10000);
    const histogram = (items: { label: string }[]) => {
      const counts = new Map<string, number>();
      for (const item of items) counts.set(item.label, (counts.get(item.label) ?? 0) + 1);
      return counts;
    };
    const trainCounts = histogram(train);
    const testCounts = histogram(test);
    for (const name of FASHION_MNIST_CLASSES) {
      expect(trainCounts.get(name)).toBe(6000);
      expect(testCounts.get(name)).toBe(1000);
    }
    expect(train[0].id).toBe('train-images-idx3-ubyte.gz#0');
    expect(test[17].id).toBe('t10k-images-idx3-ubyte.gz#17');
  });

  it('loads images matching the raw bytes, gray expanded to RGB', async () => {
    // Read independently of the source: gunzip and index the IDX bytes by hand.
    const pixels = gunzipSync(readFileSync(join(FASHION, 't10k-images-idx3-ubyte.gz')));
    const labels = gunzipSync(readFileSync(join(FASHION, 't10k-labels-idx1-ubyte.gz')));
    const test = await source.items('test');
    for (const index of [0, 1, 9999]) {
      const image = await test[index].load();
      expect([image.width, image.height]).toEqual([28, 28]);
      const raw = pixels.subarray(16 + index * 784, 16 + (index + 1) * 784);
      let expectedSum = 0;
      let sum = 0;
      for (let p = 0; p < 784; p++) {
        expectedSum += raw[p];
        expect(image.data[3 * p]).toBe(image.data[3 * p + 1]);
        expect(image.data[3 * p]).toBe(image.data[3 * p + 2]);
        sum += Math.round(image.data[3 * p] * 255);
      }
      expect(sum).toBe(expectedSum);
      expect(test[index].label).toBe(FASHION_MNIST_CLASSES[labels[8 + index]]);
    }
    // The first test image of Fashion-MNIST is an ankle boot.
    expect(test[0].label).toBe('Ankle boot');
  });

  it('defaults class names to the label digits', async () => {
    const plain = new IdxSource({ dir: FASHION });
    expect(await plain.classes()).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    expect((await plain.items('test'))[0].label).toBe('9');
  });
});

describe('IdxSource on generated files', () => {
  // 3 train images of 2 rows x 4 columns (non-square, so width/height mix-ups show), 2 test images.
  const trainImages = idxImages(3, 2, 4, (i) => i * 10);
  const trainLabels = idxLabels([2, 0, 1]);
  const testImages = idxImages(2, 2, 4, (i) => 255 - i);
  const testLabels = idxLabels([1, 1]);

  it('reads raw files under the dotted MNIST names', async () => {
    const folder = idxFolder('dotted', {
      'train-images.idx3-ubyte': trainImages,
      'train-labels.idx1-ubyte': trainLabels,
      't10k-images.idx3-ubyte': testImages,
      't10k-labels.idx1-ubyte': testLabels,
    });
    const source = new IdxSource({ dir: folder, classNames: ['zero', 'one', 'two'] });
    const train = await source.items('train');
    expect(train.map((item) => item.label)).toEqual(['two', 'zero', 'one']);
    expect(train.map((item) => item.id)).toEqual([0, 1, 2].map((i) => `train-images.idx3-ubyte#${i}`));
    const image = await train[1].load();
    expect([image.width, image.height]).toEqual([4, 2]);
    // Image 1 holds bytes 8..15 of the pixel block: values 80, 90, ..., 150.
    expect(Array.from(image.data.filter((_, i) => i % 3 === 0), (v) => Math.round(v * 255))).toEqual([
      80, 90, 100, 110, 120, 130, 140, 150,
    ]);
    expect((await source.items('test')).map((item) => item.label)).toEqual(['one', 'one']);
  });

  it('detects gzip by its magic bytes, whatever the file name says', async () => {
    const folder = idxFolder('misnamed', {
      'train-img': gzipSync(trainImages),
      'train-lbl.gz': trainLabels,
      'test-img.gz': testImages,
      'test-lbl': gzipSync(testLabels),
    });
    const source = new IdxSource({
      trainImages: join(folder, 'train-img'),
      trainLabels: join(folder, 'train-lbl.gz'),
      testImages: join(folder, 'test-img.gz'),
      testLabels: join(folder, 'test-lbl'),
    });
    expect((await source.items('train')).map((item) => item.label)).toEqual(['2', '0', '1']);
    const image = await (await source.items('test'))[1].load();
    expect(Math.round(image.data[0] * 255)).toBe(255 - 8);
  });

  it('prefers explicit file paths over the names looked up in dir', async () => {
    const folder = idxFolder('override', {
      'train-images-idx3-ubyte': trainImages,
      'train-labels-idx1-ubyte': trainLabels,
      't10k-images-idx3-ubyte': testImages,
      't10k-labels-idx1-ubyte': testLabels,
      'other-labels': idxLabels([0, 0, 0]),
    });
    const source = new IdxSource({ dir: folder, trainLabels: join(folder, 'other-labels') });
    expect((await source.items('train')).map((item) => item.label)).toEqual(['0', '0', '0']);
  });

  it('names the file with a bad magic number', async () => {
    const folder = idxFolder('bad-magic', {
      'train-images-idx3-ubyte': idxImages(3, 2, 4, () => 0, 0x00000801),
      'train-labels-idx1-ubyte': trainLabels,
    });
    const error = await errorOf(new IdxSource({ dir: folder }).items('train'));
    expect(error).toBeInstanceOf(DataSourceError);
    expect(error.message).toContain(join(folder, 'train-images-idx3-ubyte'));
    expect(error.message).toMatch(/magic number 0x00000801, expected 0x00000803/);
  });

  it('names both files when image and label counts differ', async () => {
    const folder = idxFolder('count-mismatch', {
      'train-images-idx3-ubyte': trainImages,
      'train-labels-idx1-ubyte.gz': gzipSync(idxLabels([0, 1])),
    });
    const error = await errorOf(new IdxSource({ dir: folder }).items('train'));
    expect(error.message).toContain(join(folder, 'train-images-idx3-ubyte'));
    expect(error.message).toContain(join(folder, 'train-labels-idx1-ubyte.gz'));
    expect(error.message).toMatch(/3 images .* 2 labels/);
  });

  it('rejects a file whose size does not match its header', async () => {
    const folder = idxFolder('truncated', {
      'train-images-idx3-ubyte': trainImages.subarray(0, trainImages.length - 1),
      'train-labels-idx1-ubyte': trainLabels,
    });
    const error = await errorOf(new IdxSource({ dir: folder }).items('train'));
    expect(error.message).toContain(join(folder, 'train-images-idx3-ubyte'));
    expect(error.message).toMatch(/39 bytes, expected 40 for 3 images of 2x4/);
  });

  it('rejects corrupt gzip data, naming the file', async () => {
    const gz = gzipSync(trainImages);
    const folder = idxFolder('bad-gzip', {
      'train-images-idx3-ubyte.gz': gz.subarray(0, 20),
      'train-labels-idx1-ubyte': trainLabels,
    });
    const error = await errorOf(new IdxSource({ dir: folder }).items('train'));
    expect(error.message).toContain(join(folder, 'train-images-idx3-ubyte.gz'));
    expect(error.message).toMatch(/gzip/);
  });

  it('rejects labels without a class name, suggesting classNames', async () => {
    const folder = idxFolder('label-range', {
      'train-images-idx3-ubyte': trainImages,
      'train-labels-idx1-ubyte': idxLabels([0, 12, 1]),
    });
    const error = await errorOf(new IdxSource({ dir: folder }).items('train'));
    expect(error.message).toContain(join(folder, 'train-labels-idx1-ubyte'));
    expect(error.message).toMatch(/label 12 at index 1/);
    expect(error.message).toMatch(/classNames/);
  });

  it('lists the names it looked for when a file is missing', async () => {
    const folder = idxFolder('missing', { 'train-images-idx3-ubyte': trainImages });
    const error = await errorOf(new IdxSource({ dir: folder }).items('train'));
    expect(error.message).toContain(folder);
    expect(error.message).toContain('train-labels-idx1-ubyte.gz');
    expect(error.message).toContain('train-labels.idx1-ubyte');
  });

  it('checks its options', () => {
    expect(() => new IdxSource({ trainImages: 'a', testImages: 'b' })).toThrow(/trainLabels, testLabels/);
    expect(() => new IdxSource({ dir: 'x', classNames: 'mnist' as 'fashion-mnist' })).toThrow(/classNames/);
    expect(() => new IdxSource({ dir: 'x', classNames: ['a', 'a'] })).toThrow(/twice/);
    expect(() => new IdxSource({ dir: 'x', extra: 1 } as never)).toThrow(/unknown option 'extra'/);
  });

  it('publishes a schema that accepts the same forms', () => {
    const validate = compileSchema(idxSourceSchema);
    expect(validate({ dir: '/data' })).toBe(true);
    expect(validate({ dir: '/data', classNames: 'fashion-mnist' })).toBe(true);
    expect(validate({ trainImages: 'a', trainLabels: 'b', testImages: 'c', testLabels: 'd', classNames: ['x'] })).toBe(true);
    expect(validate({ trainImages: 'a' })).toBe(false);
    expect(validate({ dir: '/data', classNames: 'mnist' })).toBe(false);
    expect(validate({ dir: '/data', extra: true })).toBe(false);
  });
});
