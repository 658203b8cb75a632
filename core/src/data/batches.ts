import { availableParallelism } from 'node:os';
import { stageProfile, timed } from '../profile.js';
import type { ImageItem, Preprocessor, RgbImage, Tensor } from '../types.js';
import { ImageDecodeError } from './errors.js';

export interface Batch {
  /** The items whose images are in `pixels`, in order (skipped bad files are absent). */
  items: ImageItem[];
  /** Their positions in the list given to `batches`. */
  indices: number[];
  /** NCHW, preprocessed; N = items.length (0 when every file of the batch was skipped). */
  pixels: Tensor;
  /** The files of this batch that were skipped (only with `skipBadFiles`; already reported to `onSkip`). */
  skipped: SkippedFile[];
}

export interface SkippedFile {
  id: string;
  reason: string;
}

export interface BatchOptions {
  /** Skip images that fail to load (reporting them to `onSkip`) instead of throwing. */
  skipBadFiles?: boolean;
  onSkip?: (skipped: SkippedFile) => void;
  /** Images decoded at once within a batch; default min(batch size, 2 x CPU count). */
  concurrency?: number;
}

interface Loaded {
  items: ImageItem[];
  /** Positions in the batch. */
  positions: number[];
  images: RgbImage[];
  skipped: SkippedFile[];
}

async function loadBatch(items: ImageItem[], concurrency: number, skipBadFiles: boolean): Promise<Loaded> {
  const images: RgbImage[] = new Array(items.length);
  const loadedOk: boolean[] = new Array(items.length).fill(false);
  const failures: unknown[] = new Array(items.length);
  let next = 0;
  let firstError: unknown;
  const worker = async (): Promise<void> => {
    while (next < items.length && firstError === undefined) {
      const i = next++;
      try {
        images[i] = await items[i].load();
        loadedOk[i] = true;
      } catch (error) {
        if (skipBadFiles) failures[i] = error;
        // Without skipping, one failure ends the batch; later loads are not started.
        else firstError ??= { index: i, error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  if (firstError !== undefined) {
    const { index, error } = firstError as { index: number; error: unknown };
    if (error instanceof ImageDecodeError) throw error;
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`Cannot load image ${items[index].id}: ${reason}`, { cause: error });
  }
  const loaded: Loaded = { items: [], positions: [], images: [], skipped: [] };
  for (let i = 0; i < items.length; i++) {
    if (loadedOk[i]) {
      loaded.items.push(items[i]);
      loaded.positions.push(i);
      loaded.images.push(images[i]);
    } else {
      const error = failures[i];
      const reason = error instanceof ImageDecodeError ? error.reason : error instanceof Error ? error.message : String(error);
      loaded.skipped.push({ id: items[i].id, reason });
    }
  }
  return loaded;
}

/**
 * Streams `items` in order as preprocessed batches of `batchSize` (the last may be smaller). While one batch is
 * being consumed, the next one is decoded and preprocessed (in the preprocessor's worker thread, so alongside the
 * consumer's work), so at most two batches exist at a time.
 *
 * A file that fails to load throws (an `ImageDecodeError` naming the path and reason) unless `skipBadFiles` is set;
 * then it is reported to `onSkip` and listed in its batch's `skipped`, and the batch is yielded without it. Every
 * batch is yielded, even one whose files were all skipped (with no items and an empty tensor), so that consumers
 * can count progress over all items.
 */
export async function* batches(
  items: readonly ImageItem[],
  batchSize: number,
  preprocessor: Preprocessor,
  options: BatchOptions = {},
): AsyncGenerator<Batch, void, undefined> {
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new Error(`batches: batchSize must be a positive integer, got ${batchSize}`);
  }
  const concurrency = options.concurrency ?? Math.min(batchSize, 2 * availableParallelism());
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new Error(`batches: concurrency must be a positive integer, got ${concurrency}`);
  }
  const skipBadFiles = options.skipBadFiles ?? false;
  const start = (from: number): Promise<Loaded & { pixels: Tensor }> => {
    const pending = (async () => {
      const began = performance.now();
      const loaded = await loadBatch(items.slice(from, from + batchSize), concurrency, skipBadFiles);
      stageProfile.add('images: load', (performance.now() - began) / 1000);
      return { ...loaded, pixels: await preprocessor.run(loaded.images) };
    })();
    // The prefetch may fail while the consumer still holds the previous batch, or after it stopped early; the
    // failure is rethrown when (and if) this batch is awaited, never reported as unhandled.
    pending.catch(() => undefined);
    return pending;
  };
  let pending = items.length > 0 ? start(0) : undefined;
  for (let from = 0; pending; from += batchSize) {
    const batch = await timed('wait: images', () => pending!);
    pending = from + batchSize < items.length ? start(from + batchSize) : undefined;
    for (const skipped of batch.skipped) options.onSkip?.(skipped);
    yield { items: batch.items, indices: batch.positions.map((p) => from + p), pixels: batch.pixels, skipped: batch.skipped };
  }
}
