// The service's micro-batcher alone: passes of at most batchSize images, one at a time, started when full, after
// waitMs, or at once when flushing; each image gets its own row; room is counted from reservation; a withdrawn image
// leaves the queue; a failed or misordered pass answers none of its images and the next pass still runs. The scoring
// function stands in for the detector with per-image arithmetic whose answer is known for every image.
import { describe, expect, it } from 'vitest';
import type { DetectorScores, Tensor } from '@transformaly/core';
import { MicroBatcher, type BatcherOptions } from '../serve/src/batcher.js';

/** An image of 4 values that identify it: [k, k, k, k]. */
const image = (k: number): Tensor => ({ dims: [1, 1, 2, 2], data: new Float32Array(4).fill(k) });

/** Per image: pretrained = sum of its values, finetuned = its first value, combined = their sum. */
function arithmetic(log: { sizes: number[]; active: number; maxActive: number }, delayMs = 5) {
  return async (pixels: Tensor, ids: string[]): Promise<DetectorScores> => {
    log.sizes.push(ids.length);
    log.active++;
    log.maxActive = Math.max(log.maxActive, log.active);
    await new Promise((resolve) => setTimeout(resolve, delayMs));
    log.active--;
    const n = pixels.dims[0];
    const pretrained = new Float64Array(n);
    const finetuned = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < 4; j++) pretrained[i] += pixels.data[i * 4 + j];
      finetuned[i] = pixels.data[i * 4];
    }
    const combined = pretrained.map((p, i) => p + finetuned[i]);
    return { ids, pretrained, finetuned, combined, anomalous: Array.from(combined, (c) => c < 10), skipped: [] };
  };
}

function batcher(options: Partial<BatcherOptions> & Pick<BatcherOptions, 'score'>): MicroBatcher {
  return new MicroBatcher({ batchSize: 4, waitMs: 50, maxQueue: 100, ...options });
}

function submitAll(b: MicroBatcher, ks: number[], signal?: AbortSignal) {
  expect(b.reserve(ks.length)).toBe(true);
  return ks.map((k) => b.submit(`image-${k}`, image(k), signal));
}

describe('MicroBatcher', () => {
  it('answers each image with its own row: passes of at most batchSize, one at a time', async () => {
    const log = { sizes: [] as number[], active: 0, maxActive: 0 };
    const b = batcher({ score: arithmetic(log) });
    const ks = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    const results = await Promise.all(submitAll(b, ks));
    results.forEach((r, i) => {
      expect(r.pretrained).toBe(4 * ks[i]);
      expect(r.finetuned).toBe(ks[i]);
      expect(r.combined).toBe(5 * ks[i]);
      expect(r.anomalous).toBe(5 * ks[i] < 10);
    });
    expect(log.sizes).toEqual([4, 4, 2]);
    expect(results.map((r) => r.batchImages)).toEqual([4, 4, 4, 4, 4, 4, 4, 4, 2, 2]);
    expect(log.maxActive).toBe(1);
  });

  it('starts a full pass at once, and a partial one after waitMs', async () => {
    const log = { sizes: [] as number[], active: 0, maxActive: 0 };
    const b = batcher({ score: arithmetic(log, 0), waitMs: 60_000 });
    // Full: no waiting for the minute.
    await Promise.all(submitAll(b, [1, 2, 3, 4]));
    const short = batcher({ score: arithmetic(log, 0), waitMs: 80 });
    const [alone] = await Promise.all(submitAll(short, [7]));
    expect(alone.batchImages).toBe(1);
    // Timers may fire a millisecond early.
    expect(alone.queueMs).toBeGreaterThanOrEqual(78);
    // waitMs 0: the first image does not wait; those that arrive during its pass make the next one.
    const eager = batcher({ score: arithmetic(log, 5), waitMs: 0 });
    log.sizes = [];
    await Promise.all(submitAll(eager, [1, 2, 3]));
    expect(log.sizes).toEqual([1, 2]);
  });

  it('gathers images that arrive within waitMs into one pass', async () => {
    const log = { sizes: [] as number[], active: 0, maxActive: 0 };
    const b = batcher({ score: arithmetic(log, 0), waitMs: 200 });
    const first = submitAll(b, [1]);
    await new Promise((resolve) => setTimeout(resolve, 20));
    const second = submitAll(b, [2, 3]);
    const results = await Promise.all([...first, ...second]);
    expect(log.sizes).toEqual([3]);
    expect(results.map((r) => r.pretrained)).toEqual([4, 8, 12]);
  });

  it('waits for images still being decoded that fit in the pass, up to about the time a pass of the queued ones takes', async () => {
    const log = { sizes: [] as number[], active: 0, maxActive: 0 };
    // Each pass takes 100 ms whatever its size, so after the first one a pass costs about 100 ms per queued image.
    const b = batcher({ score: arithmetic(log, 100), waitMs: 5, batchSize: 4 });
    await Promise.all(submitAll(b, [1]));
    // Three images received; one decoded at once, the others 25 ms later: well past waitMs, within the pass estimate.
    expect(b.reserve(3)).toBe(true);
    const first = b.submit('a', image(1));
    await new Promise((resolve) => setTimeout(resolve, 25));
    const rest = [b.submit('b', image(2)), b.submit('c', image(3))];
    const results = await Promise.all([first, ...rest]);
    expect(log.sizes).toEqual([1, 3]);
    expect(results.map((r) => r.pretrained)).toEqual([4, 8, 12]);

    // One image whose decode never ends (its request failed later) holds the pass only about that long.
    expect(b.reserve(2)).toBe(true);
    const alone = await b.submit('d', image(4));
    expect(alone.batchImages).toBe(1);
    // About 87 ms (one image's estimated pass), not the 5 ms of waitMs; timers may fire a millisecond early.
    expect(alone.queueMs).toBeGreaterThanOrEqual(80);
    expect(alone.queueMs).toBeLessThan(1000);
    b.release(1);

    // A decode that fails releases its room, and the image waiting for it goes at once.
    expect(b.reserve(2)).toBe(true);
    const waiting = b.submit('e', image(5));
    setTimeout(() => b.release(1), 10);
    const released = await waiting;
    expect(released.batchImages).toBe(1);
    expect(released.queueMs).toBeLessThan(60);
  });

  it('counts room from reservation: all of a request fits or none of it', async () => {
    const log = { sizes: [] as number[], active: 0, maxActive: 0 };
    const b = batcher({ score: arithmetic(log), maxQueue: 5, waitMs: 60_000, batchSize: 8 });
    expect(b.reserve(3)).toBe(true);
    expect(b.reserve(3)).toBe(false);
    expect(b.pending).toBe(3);
    const queued = b.submit('a', image(1));
    expect(b.pending).toBe(3);
    b.release(2);
    expect(b.pending).toBe(1);
    expect(b.reserve(4)).toBe(true);
    expect(b.full).toBe(true);
    b.release(4);
    await b.flush();
    expect((await queued).pretrained).toBe(4);
    expect(b.pending).toBe(0);
  });

  it('withdraws an image whose request was aborted while it waited; the others are scored', async () => {
    const log = { sizes: [] as number[], active: 0, maxActive: 0 };
    const b = batcher({ score: arithmetic(log), waitMs: 60_000 });
    const abort = new AbortController();
    const [withdrawn] = submitAll(b, [1], abort.signal);
    const [kept] = submitAll(b, [2]);
    expect(b.pending).toBe(2);
    abort.abort(new Error('client left'));
    await expect(withdrawn).rejects.toThrow('client left');
    expect(b.pending).toBe(1);
    await b.flush();
    expect((await kept).pretrained).toBe(8);
    expect(log.sizes).toEqual([1]);
  });

  it('a pass that fails rejects its images only; the next pass runs', async () => {
    let calls = 0;
    const log = { sizes: [] as number[], active: 0, maxActive: 0 };
    const good = arithmetic(log);
    const passes: { images: number; error?: unknown }[] = [];
    const b = batcher({
      batchSize: 2,
      score: async (pixels, ids) => {
        if (calls++ === 0) throw new Error('the engine failed');
        return good(pixels, ids);
      },
      onBatch: ({ images, error }) => passes.push({ images, error }),
    });
    const [a, c, d] = submitAll(b, [1, 2, 3]);
    await expect(a).rejects.toThrow('the engine failed');
    await expect(c).rejects.toThrow('the engine failed');
    expect((await d).pretrained).toBe(12);
    expect(passes.map((p) => [p.images, p.error === undefined])).toEqual([
      [2, false],
      [1, true],
    ]);
  });

  it('answers none of a pass whose scores come back for other images or in another order', async () => {
    const log = { sizes: [] as number[], active: 0, maxActive: 0 };
    const good = arithmetic(log);
    const b = batcher({
      score: async (pixels, ids) => {
        const scores = await good(pixels, ids);
        return { ...scores, ids: [...ids].reverse() };
      },
    });
    const results = await Promise.allSettled(submitAll(b, [1, 2]));
    for (const r of results) {
      expect(r.status).toBe('rejected');
      expect(((r as PromiseRejectedResult).reason as Error).message).toBe(
        'a backbone pass of 2 images returned the scores of [image-2, image-1], not of [image-1, image-2]',
      );
    }
  });

  it('flush starts every pass without waiting and resolves when nothing is left', async () => {
    const log = { sizes: [] as number[], active: 0, maxActive: 0 };
    const b = batcher({ score: arithmetic(log), waitMs: 60_000, batchSize: 3 });
    const results = submitAll(b, [1, 2, 3, 4, 5]);
    await b.flush();
    expect(log.sizes).toEqual([3, 2]);
    expect((await Promise.all(results)).map((r) => r.pretrained)).toEqual([4, 8, 12, 16, 20]);
    expect(b.pending).toBe(0);
  });

  it('refuses settings that cannot work', () => {
    const score = arithmetic({ sizes: [], active: 0, maxActive: 0 });
    expect(() => batcher({ score, batchSize: 0 })).toThrow('MicroBatcher: batchSize must be a positive integer, got 0');
    expect(() => batcher({ score, maxQueue: 1.5 })).toThrow('MicroBatcher: maxQueue must be a positive integer, got 1.5');
    expect(() => batcher({ score, waitMs: -1 })).toThrow('MicroBatcher: waitMs must be a number >= 0, got -1');
  });
});
