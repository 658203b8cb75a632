import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  CifarSource,
  cifar100SourceSchema,
  cifar10SourceSchema,
  cifarSourceSchema,
  compileSchema,
  DataSourceError,
} from '@transformaly/core';
import { tempDir } from './fixtures/data/images.js';

const tmp = tempDir('cifar');
afterAll(() => tmp.remove());

const PIXELS = 1024;

/** One record: label byte(s), then R, G and B planes; pixel p of channel c holds (seed + 3p + c) mod 256. */
function record(labels: number[], seed: number): Uint8Array {
  const bytes = new Uint8Array(labels.length + 3 * PIXELS);
  bytes.set(labels, 0);
  for (let c = 0; c < 3; c++) {
    for (let p = 0; p < PIXELS; p++) bytes[labels.length + c * PIXELS + p] = (seed + 3 * p + c) % 256;
  }
  return bytes;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function folder(name: string, files: Record<string, Uint8Array | string>): string {
  const dir = join(tmp.path, name);
  mkdirSync(dir, { recursive: true });
  for (const [file, content] of Object.entries(files)) writeFileSync(join(dir, file), content);
  return dir;
}

const CIFAR10_NAMES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];

/** Five train batches of two records each (labels 2b and 2b+1 for batch b), one test batch of three. */
function cifar10Files(): Record<string, Uint8Array | string> {
  const files: Record<string, Uint8Array | string> = {};
  for (let b = 0; b < 5; b++) {
    files[`data_batch_${b + 1}.bin`] = concat([record([2 * b], 10 * b), record([2 * b + 1], 10 * b + 5)]);
  }
  files['test_batch.bin'] = concat([record([3], 200), record([9], 201), record([0], 202)]);
  return files;
}

async function errorOf(promise: Promise<unknown>): Promise<Error> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: Error) => e,
  );
}

describe('CifarSource cifar10', () => {
  it('reads every batch in order, with names from batches.meta.txt', async () => {
    const dir = folder('c10', { ...cifar10Files(), 'batches.meta.txt': `${CIFAR10_NAMES.join('\n')}\n\n` });
    const source = new CifarSource({ dir, variant: 'cifar10' });
    expect(source.name).toBe('cifar10');
    expect(await source.classes()).toEqual(CIFAR10_NAMES);
    const train = await source.items('train');
    expect(train.map((item) => item.label)).toEqual(CIFAR10_NAMES);
    expect(train[3].id).toBe('data_batch_2.bin#1');
    const test = await source.items('test');
    expect(test.map((item) => item.label)).toEqual(['cat', 'truck', 'airplane']);
    expect(test[1].id).toBe('test_batch.bin#1');
  });

  it('converts a CHW record to interleaved RGB in [0, 1]', async () => {
    const dir = folder('c10-pixels', cifar10Files());
    const image = await (await new CifarSource({ dir, variant: 'cifar10' }).items('test'))[1].load();
    expect([image.width, image.height, image.data.length]).toEqual([32, 32, 3 * PIXELS]);
    for (const p of [0, 1, 33, 1023]) {
      for (let c = 0; c < 3; c++) expect(image.data[3 * p + c]).toBe(Math.fround(((201 + 3 * p + c) % 256) / 255));
    }
  });

  it('uses label indices without a names file', async () => {
    const dir = folder('c10-nonames', cifar10Files());
    const source = new CifarSource({ dir, variant: 'cifar10' });
    expect(await source.classes()).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    expect((await source.items('test')).map((item) => item.label)).toEqual(['3', '9', '0']);
  });

  it('names a file that is not a whole number of records', async () => {
    const files = cifar10Files();
    files['data_batch_3.bin'] = (files['data_batch_3.bin'] as Uint8Array).subarray(0, 3073 + 100);
    const dir = folder('c10-size', files);
    const error = await errorOf(new CifarSource({ dir, variant: 'cifar10' }).items('train'));
    expect(error).toBeInstanceOf(DataSourceError);
    expect(error.message).toContain(join(dir, 'data_batch_3.bin'));
    expect(error.message).toMatch(/3173 bytes, not a whole number of 3073-byte records/);
  });

  it('names a missing batch and the layout expected', async () => {
    const files = cifar10Files();
    delete files['data_batch_5.bin'];
    const dir = folder('c10-missing', files);
    const error = await errorOf(new CifarSource({ dir, variant: 'cifar10' }).items('train'));
    expect(error.message).toContain(join(dir, 'data_batch_5.bin'));
    expect(error.message).toMatch(/does not exist; expected layout/);
  });

  it('rejects an out-of-range label and a names file of the wrong length', async () => {
    const files = cifar10Files();
    files['test_batch.bin'] = concat([record([3], 0), record([10], 0)]);
    const dir = folder('c10-label', files);
    const error = await errorOf(new CifarSource({ dir, variant: 'cifar10' }).items('test'));
    expect(error.message).toContain(join(dir, 'test_batch.bin'));
    expect(error.message).toMatch(/record 1 has label 10/);

    const named = folder('c10-names', { ...cifar10Files(), 'batches.meta.txt': 'cat\ndog\n' });
    const namesError = await errorOf(new CifarSource({ dir: named, variant: 'cifar10' }).classes());
    expect(namesError.message).toContain(join(named, 'batches.meta.txt'));
    expect(namesError.message).toMatch(/2 names, expected 10/);
  });
});

describe('CifarSource cifar100', () => {
  const coarse = Array.from({ length: 20 }, (_, i) => `super${i}`);
  const fine = Array.from({ length: 100 }, (_, i) => `class${i}`);
  const files = () => ({
    'train.bin': concat([record([4, 40], 1), record([19, 99], 2), record([0, 7], 3)]),
    'test.bin': concat([record([7, 77], 4)]),
    'coarse_label_names.txt': coarse.join('\n'),
    'fine_label_names.txt': `${fine.join('\r\n')}\r\n`,
  });

  it('uses the coarse superclasses by default', async () => {
    const source = new CifarSource({ dir: folder('c100', files()), variant: 'cifar100' });
    expect(source.name).toBe('cifar100');
    expect(await source.classes()).toEqual(coarse);
    expect((await source.items('train')).map((item) => item.label)).toEqual(['super4', 'super19', 'super0']);
    const image = await (await source.items('test'))[0].load();
    // Two label bytes precede the pixels in CIFAR-100 records.
    expect(image.data[0]).toBe(Math.fround(4 / 255));
    expect(image.data[5]).toBe(Math.fround(9 / 255));
  });

  it('uses the 100 fine classes when asked', async () => {
    const source = new CifarSource({ dir: folder('c100-fine', files()), variant: 'cifar100', labels: 'fine' });
    expect(await source.classes()).toEqual(fine);
    expect((await source.items('train')).map((item) => item.label)).toEqual(['class40', 'class99', 'class7']);
    expect((await source.items('test')).map((item) => item.id)).toEqual(['test.bin#0']);
  });

  it('rejects a 3073-byte-record file as CIFAR-100', async () => {
    const dir = folder('c100-size', { 'train.bin': record([1], 0), 'test.bin': record([1, 1], 0) });
    const error = await errorOf(new CifarSource({ dir, variant: 'cifar100' }).items('train'));
    expect(error.message).toContain(join(dir, 'train.bin'));
    expect(error.message).toMatch(/3074-byte records/);
  });
});

describe('CifarSource options', () => {
  it('checks them in the constructor', () => {
    expect(() => new CifarSource({ dir: 'x', variant: 'cifar11' as 'cifar10' })).toThrow(/variant/);
    expect(() => new CifarSource({ dir: 'x', variant: 'cifar10', labels: 'fine' })).toThrow(/cifar100 only/);
    expect(() => new CifarSource({ variant: 'cifar10' } as never)).toThrow(/'dir'/);
  });

  it('publishes schemas that agree', () => {
    const both = compileSchema(cifarSourceSchema);
    expect(both({ dir: 'd', variant: 'cifar10' })).toBe(true);
    expect(both({ dir: 'd', variant: 'cifar100', labels: 'fine' })).toBe(true);
    expect(both({ dir: 'd', variant: 'cifar10', labels: 'fine' })).toBe(false);
    expect(both({ dir: 'd' })).toBe(false);
    const ten = compileSchema(cifar10SourceSchema);
    expect(ten({ dir: 'd' })).toBe(true);
    expect(ten({ dir: 'd', labels: 'coarse' })).toBe(false);
    const hundred = compileSchema(cifar100SourceSchema);
    expect(hundred({ dir: 'd', labels: 'coarse' })).toBe(true);
    expect(hundred({ dir: 'd', labels: 'medium' })).toBe(false);
  });
});
