import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  batches,
  createPreprocessor,
  decodeImage,
  ImageDecodeError,
  type Batch,
  type ImageItem,
  type SkippedFile,
} from '@transformaly/core';
import { pattern, tempDir, writeImage } from './fixtures/data/images.js';

// Identity preprocessing at 2x2, so each output pixel is the image's own value.
const identity = createPreprocessor({ size: [2, 2], resample: 'bilinear', mean: [0, 0, 0], std: [1, 1, 1] });

/** Item i is a 2x2 image of constant value i; loads are logged to check ordering and prefetch. */
function counted(n: number, log: number[] = [], inFlight = { now: 0, max: 0 }): ImageItem[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `item${i}`,
    label: 'x',
    load: async () => {
      log.push(i);
      inFlight.now++;
      inFlight.max = Math.max(inFlight.max, inFlight.now);
      await new Promise((resolve) => setImmediate(resolve));
      inFlight.now--;
      return { width: 2, height: 2, data: new Float32Array(12).fill(i) };
    },
  }));
}

async function collect(stream: AsyncIterable<Batch>): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const batch of stream) out.push(batch);
  return out;
}

describe('batches', () => {
  it('yields every item once, in order, in batches of the requested size', async () => {
    const result = await collect(batches(counted(10), 4, identity));
    expect(result.map((b) => b.items.length)).toEqual([4, 4, 2]);
    expect(result.map((b) => b.pixels.dims)).toEqual([
      [4, 3, 2, 2],
      [4, 3, 2, 2],
      [2, 3, 2, 2],
    ]);
    expect(result.flatMap((b) => b.items.map((item) => item.id))).toEqual(Array.from({ length: 10 }, (_, i) => `item${i}`));
    // Image n of a batch sits at offset n * 12 of its tensor, holding its item's value.
    for (const batch of result) {
      batch.items.forEach((item, n) => {
        expect(Array.from(batch.pixels.data.subarray(n * 12, (n + 1) * 12))).toEqual(new Array(12).fill(Number(item.id.slice(4))));
      });
      expect(batch.skipped).toEqual([]);
    }
  });

  it('decodes the next batch while the current one is consumed, and no further', async () => {
    const log: number[] = [];
    const stream = batches(counted(12, log), 4, identity, { concurrency: 4 });
    const first = await stream.next();
    expect((first.value as Batch).items.map((item) => item.id)).toEqual(['item0', 'item1', 'item2', 'item3']);
    // Batch 1 is already being decoded; batch 2 has not started.
    expect([...log].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    await stream.return(undefined);
  });

  it('keeps at most `concurrency` loads in flight', async () => {
    const inFlight = { now: 0, max: 0 };
    await collect(batches(counted(20, [], inFlight), 10, identity, { concurrency: 3 }));
    expect(inFlight.max).toBeLessThanOrEqual(3);
    expect(inFlight.max).toBeGreaterThan(1);
  });

  it('handles an empty list and checks its arguments', async () => {
    expect(await collect(batches([], 4, identity))).toEqual([]);
    await expect(collect(batches(counted(2), 0, identity))).rejects.toThrow(/batchSize/);
    await expect(collect(batches(counted(2), 2, identity, { concurrency: 0 }))).rejects.toThrow(/concurrency/);
  });

  describe('with bad files', () => {
    const tmp = tempDir('batches');
    afterAll(() => tmp.remove());
    const file = (name: string) => join(tmp.path, name);
    const items = (names: string[]): ImageItem[] =>
      names.map((name) => ({ id: file(name), label: 'x', load: () => decodeImage(file(name)) }));

    beforeAll(async () => {
      for (const name of ['a.png', 'b.png', 'd.png', 'e.png']) await writeImage(file(name), pattern(3, 3), 'png');
      writeFileSync(file('c.png'), 'not a png');
      writeFileSync(file('f.png'), '');
    });

    it('throws with the path and reason by default', async () => {
      const error = await collect(batches(items(['a.png', 'b.png', 'c.png', 'd.png']), 2, identity)).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(ImageDecodeError);
      expect((error as ImageDecodeError).path).toBe(file('c.png'));
      expect((error as Error).message).toContain(file('c.png'));
    });

    it('skips and reports them with skipBadFiles; a batch just has fewer images', async () => {
      const skipped: SkippedFile[] = [];
      const result = await collect(
        batches(items(['a.png', 'b.png', 'c.png', 'd.png', 'e.png', 'f.png']), 3, identity, {
          skipBadFiles: true,
          onSkip: (s) => skipped.push(s),
        }),
      );
      expect(skipped.map((s) => s.id)).toEqual([file('c.png'), file('f.png')]);
      expect(skipped.every((s) => s.reason.length > 0 && !s.reason.includes(tmp.path))).toBe(true);
      expect(result.map((b) => b.items.map((item) => item.id))).toEqual([
        [file('a.png'), file('b.png')],
        [file('d.png'), file('e.png')],
      ]);
      expect(result.map((b) => b.pixels.dims[0])).toEqual([2, 2]);
      expect(result.map((b) => b.skipped.map((s) => s.id))).toEqual([[file('c.png')], [file('f.png')]]);
    });

    it('still yields a batch whose files were all skipped, empty, so progress can count it', async () => {
      const result = await collect(
        batches(items(['c.png', 'f.png', 'a.png']), 2, identity, { skipBadFiles: true }),
      );
      expect(result.map((b) => b.items.length)).toEqual([0, 1]);
      expect(result[0].pixels.dims).toEqual([0, 3, 2, 2]);
      expect(result[0].skipped.length).toBe(2);
    });

    it('names the item when a non-file source fails to load', async () => {
      const failing: ImageItem = {
        id: 'archive.zip#3',
        label: 'x',
        load: async () => {
          throw new Error('entry is encrypted');
        },
      };
      await expect(collect(batches([failing], 1, identity))).rejects.toThrow(
        'Cannot load image archive.zip#3: entry is encrypted',
      );
    });

    it('does not leak a failure of a prefetched batch the consumer never reached', async () => {
      const stream = batches(items(['a.png', 'b.png', 'c.png']), 2, identity);
      for await (const batch of stream) {
        expect(batch.items.length).toBe(2);
        break;
      }
      // An unhandled rejection from the prefetched batch holding c.png would fail this test file.
      await new Promise((resolve) => setTimeout(resolve, 50));
    });
  });
});
