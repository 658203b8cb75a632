// The teacher cache: a fit runs the frozen teacher once per image. The first pass over a split streams its batches
// through the backbone and records each image's hidden states at the tapped blocks (and its final CLS); every later
// pass (the next epochs' permutations, the held-out evaluations, the features of the fit and held-out images) reads
// them back in the order it needs. Records stay in memory up to a budget; the rest go to a temporary file.
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { open, rm, type FileHandle } from 'node:fs/promises';
import { freemem, totalmem } from 'node:os';
import { join } from 'node:path';
import { decodeHalf, encodeHalf } from '../numeric/half.js';
import { stageProfile, timed } from '../profile.js';
import type { Backbone, BackboneOutput, BlockTap, Matrix, TapBatch, TapPrecision, TapSource, TeacherTapsRequest, Tensor } from '../types.js';
import { tapOf } from './taps.js';

/** A batch of preprocessed pixels and the indices (into their split) of the images in it. */
export interface IndexedPixels {
  pixels: Tensor;
  indices: readonly number[];
}

/** The images of one split, as whoever owns them streams them. */
export interface CachedImages {
  /** Images in the split. */
  count: number;
  /**
   * Preprocessed batches over `order` (indices into the split): `order` cut into runs of `batchSize`, each less the
   * images that could not be loaded; a run with none left is not yielded.
   */
  batches(order: readonly number[]): AsyncIterable<IndexedPixels>;
}

export interface TeacherCacheSettings extends TeacherTapsRequest {
  backbone: Backbone;
  batchSize: number;
  train: CachedImages;
  /** Epoch `epoch`'s training order, as indices into `train`. */
  trainOrder(epoch: number): readonly number[];
  validation: CachedImages;
  /** Folder of the spill file, created there only when the memory budget is exceeded. */
  spillDir: string;
  signal?: AbortSignal;
}

export type CacheSplit = 'train' | 'validation';

/** The recorded outputs of one batch of a split, as the backbone gave them (taps rounded to the cache's precision). */
export interface RecordedBatch {
  indices: number[];
  output: BackboneOutput;
}

/** Half of the memory free now (or left under the process's cgroup limit): the default budget of recorded taps. */
export function defaultCacheMemoryBytes(): number {
  const free = freemem();
  const limit = process.constrainedMemory?.() ?? 0;
  // An unlimited cgroup reports 2^64; only a limit below the machine's memory constrains anything.
  const room = limit > 0 && limit < totalmem() ? Math.min(free, limit - process.memoryUsage().rss) : free;
  return Math.max(0, Math.floor(room / 2));
}

/**
 * A `TapSource` that runs the teacher once per image. `train(epoch)` and `validation()` give the same batches, in the
 * same order, as streaming the teacher over the same images would; with float32 storage the taps are the streamed
 * ones. With float16/bfloat16 storage every pass, the first included, sees the taps rounded to that precision.
 *
 * A split's first pass records it (whichever epoch that is: a resumed fit records on its first epoch); a pass that
 * does not complete leaves the split to be recorded again. `dispose` frees the memory and deletes the spill file; the
 * file is also deleted if the process exits first.
 */
export class TeacherCache implements TapSource {
  private readonly store: RecordStore;
  private readonly recorded: Record<CacheSplit, boolean> = { train: false, validation: false };

  constructor(private readonly settings: TeacherCacheSettings) {
    const { blocks, batchSize, memoryBytes } = settings;
    if (blocks.length === 0) throw new Error('teacher cache: no blocks to record');
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`teacher cache: batchSize must be a positive integer, got ${batchSize}`);
    if (!(memoryBytes >= 0)) throw new Error(`teacher cache: memoryBytes must be a non-negative number, got ${memoryBytes}`);
    if (!['float32', 'float16', 'bfloat16'].includes(settings.precision)) {
      throw new Error(`teacher cache: precision must be float32, float16 or bfloat16, got ${JSON.stringify(settings.precision)}`);
    }
    this.store = new RecordStore(settings, { train: settings.train.count, validation: settings.validation.count });
  }

  train(epoch: number): AsyncIterable<TapBatch> {
    return this.tapPass('train', this.settings.trainOrder(epoch));
  }

  validation(): AsyncIterable<TapBatch> {
    return this.tapPass('validation', naturalOrder(this.settings.validation.count));
  }

  /** Whether every image of `split` has been through the teacher (images that could not be loaded excepted). */
  isRecorded(split: CacheSplit): boolean {
    return this.recorded[split];
  }

  /** The recorded outputs of `split` in its own order, `batchSize` images at a time (as streaming it would batch them). */
  outputs(split: CacheSplit): AsyncIterable<RecordedBatch> {
    if (!this.recorded[split]) throw new Error(`teacher cache: the ${split} images have not been recorded`);
    return this.replay(split, naturalOrder(this.settings[split].count));
  }

  /** Bytes of taps held in memory and in the spill file. */
  get bytes(): { memory: number; file: number } {
    return this.store.bytes;
  }

  /** The spill file, while there is one. */
  get spillFile(): string | undefined {
    return this.store.file;
  }

  async dispose(): Promise<void> {
    await this.store.dispose();
  }

  private async *tapPass(split: CacheSplit, order: readonly number[]): AsyncGenerator<TapBatch> {
    const batches = this.recorded[split] ? this.replay(split, order) : this.record(split, order);
    for await (const { indices, output } of batches) {
      yield { images: indices.length, taps: new Map(this.settings.blocks.map((b) => [b, output.taps.get(b)!])) };
    }
  }

  private async *record(split: CacheSplit, order: readonly number[]): AsyncGenerator<RecordedBatch> {
    const { backbone, blocks, spec, signal } = this.settings;
    this.store.forget(split);
    for await (const { pixels, indices } of this.settings[split].batches(order)) {
      signal?.throwIfAborted();
      const output = await timed('teacher', () => backbone.forward(pixels, { taps: [...blocks] }));
      const taps = new Map<number, BlockTap>(blocks.map((b) => [b, tapOf(output, b, spec)]));
      if (output.features.rows !== indices.length || taps.get(blocks[0])!.input.dims[0] !== indices.length) {
        throw new Error(`teacher cache: a batch of ${indices.length} images gave outputs for ${output.features.rows}`);
      }
      await timed('teacher cache: store', () => this.store.write(split, indices, output.features, taps));
      // A disk slower than the teacher would otherwise let unwritten batches pile up in memory.
      await timed('wait: teacher cache', () => this.store.flush(2));
      yield { indices: [...indices], output: { features: output.features, taps } };
    }
    await this.store.flush();
    this.recorded[split] = true;
  }

  /** Reads batch k + 1 while batch k is in use. */
  private async *replay(split: CacheSplit, order: readonly number[]): AsyncGenerator<RecordedBatch> {
    const { batchSize, signal } = this.settings;
    const runs: number[][] = [];
    for (let start = 0; start < order.length; start += batchSize) {
      const run = order.slice(start, start + batchSize).filter((i) => this.store.has(split, i));
      if (run.length > 0) runs.push(run);
    }
    const read = (k: number) => {
      const start = performance.now();
      const pending = this.store.read(split, runs[k]);
      // The copies from memory happen before read returns; file reads run on libuv's threads.
      stageProfile.add('teacher cache: read', (performance.now() - start) / 1000);
      // Rethrown when awaited; a consumer that stops early never awaits it.
      pending.catch(() => undefined);
      return pending;
    };
    let next = runs.length > 0 ? read(0) : undefined;
    for (let k = 0; k < runs.length; k++) {
      signal?.throwIfAborted();
      const current = await timed('wait: teacher cache', () => next!);
      next = k + 1 < runs.length ? read(k + 1) : undefined;
      yield current;
    }
  }
}

function naturalOrder(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** One stored hidden state of an image, [tokens, width]. */
interface Layer {
  tokens: number;
  width: number;
  /** tokens * width. */
  size: number;
  /** The taps that hold this hidden state, as [block, 'input' | 'output']. */
  holders: [number, 'input' | 'output'][];
}

/**
 * The hidden states to store, each once: a block's output that is the next block's input (the same tensor, or equal
 * values) is one layer.
 */
function layoutOf(taps: ReadonlyMap<number, BlockTap>): Layer[] {
  const layers: Layer[] = [];
  let previous: { block: number; tensor: Tensor; layer: Layer } | undefined;
  for (const block of [...taps.keys()].sort((a, b) => a - b)) {
    const tap = taps.get(block)!;
    const [, tokens, width] = tap.input.dims;
    let input: Layer | undefined;
    if (previous?.block === block - 1 && sameValues(previous.tensor, tap.input)) {
      input = previous.layer;
      input.holders.push([block, 'input']);
    } else {
      input = { tokens, width, size: tokens * width, holders: [[block, 'input']] };
      layers.push(input);
    }
    const output: Layer = { tokens, width, size: tokens * width, holders: [[block, 'output']] };
    layers.push(output);
    previous = { block, tensor: tap.output, layer: output };
  }
  return layers;
}

function sameValues(a: Tensor, b: Tensor): boolean {
  if (a.data === b.data) return true;
  if (a.data.length !== b.data.length) return false;
  const bytes = (t: Tensor) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  return bytes(a).equals(bytes(b));
}

const CHUNK_BYTES = 64 * 2 ** 20;

/** Files still to delete if the process exits before their cache is disposed. */
const liveFiles = new Set<string>();
let exitHookInstalled = false;

/**
 * Per-image records of hidden states. A record is its layers one after another, each in the storage precision;
 * records fill memory chunks up to the budget, then a file. Each image's CLS is kept in memory in float64.
 */
class RecordStore {
  private layers: Layer[] | undefined;
  private readonly elementBytes: number;
  private readonly half: 'float16' | 'bfloat16' | undefined;
  private chunks: ArrayBuffer[] = [];
  private chunkSlots = 0;
  private slotsAllocated = 0;
  private readonly freeSlots: number[] = [];
  private usedSlots = 0;
  /** Per split and image: memory slot (>= 0), file record (< -1 encodes position), or -1 when not recorded. */
  private readonly where: Record<CacheSplit, Float64Array>;
  private readonly features: Record<CacheSplit, Float64Array | undefined> = { train: undefined, validation: undefined };
  private width = 0;
  private fileHandle: Promise<FileHandle> | undefined;
  private path: string | undefined;
  private fileEnd = 0;
  private pendingWrites: Promise<void>[] = [];
  private disposed = false;

  constructor(
    private readonly settings: { precision: TapPrecision; memoryBytes: number; spillDir: string },
    counts: Record<CacheSplit, number>,
  ) {
    this.half = settings.precision === 'float32' ? undefined : settings.precision;
    this.elementBytes = this.half ? 2 : 4;
    this.where = { train: new Float64Array(counts.train).fill(-1), validation: new Float64Array(counts.validation).fill(-1) };
  }

  get file(): string | undefined {
    return this.path;
  }

  get bytes(): { memory: number; file: number } {
    return { memory: this.usedSlots * this.recordBytes, file: this.fileEnd };
  }

  private get recordBytes(): number {
    return this.layers ? this.layers.reduce((n, l) => n + l.size, 0) * this.elementBytes : 0;
  }

  has(split: CacheSplit, index: number): boolean {
    return this.where[split][index] !== -1;
  }

  /** Drops what a split had recorded (an earlier pass that did not complete). */
  forget(split: CacheSplit): void {
    const where = this.where[split];
    for (let i = 0; i < where.length; i++) {
      if (where[i] >= 0) {
        this.freeSlots.push(where[i]);
        this.usedSlots--;
      }
      where[i] = -1;
    }
  }

  /** Records a batch; file writes complete in the background (`flush` waits for them). Half precision rounds the taps in place. */
  write(split: CacheSplit, indices: readonly number[], features: Matrix, taps: ReadonlyMap<number, BlockTap>): void {
    this.checkAlive();
    const layers = (this.layers ??= layoutOf(taps));
    const n = indices.length;
    if (this.features[split] === undefined) {
      this.width = features.cols;
      this.features[split] = new Float64Array(this.where[split].length * features.cols);
    }
    if (features.cols !== this.width) throw new Error(`teacher cache: CLS features of width ${features.cols}, expected ${this.width}`);
    const cls = this.features[split]!;
    const sources = layers.map((layer) => {
      const [block, which] = layer.holders[0];
      return taps.get(block)![which].data;
    });
    const spilled: { index: number; image: number }[] = [];
    for (let j = 0; j < n; j++) {
      const index = indices[j];
      if (!(index >= 0 && index < this.where[split].length)) throw new Error(`teacher cache: image index ${index} is outside the ${split} images`);
      cls.set(features.data.subarray(j * this.width, (j + 1) * this.width), index * this.width);
      const slot = this.takeSlot();
      if (slot === undefined) {
        spilled.push({ index, image: j });
        continue;
      }
      this.where[split][index] = slot;
      const record = this.slotView(slot);
      let offset = 0;
      for (const [l, layer] of layers.entries()) {
        const src = sources[l].subarray(j * layer.size, (j + 1) * layer.size);
        if (this.half) {
          const bits = (record as Uint16Array).subarray(offset, offset + layer.size);
          encodeHalf(this.half, src, bits);
          decodeHalf(this.half, bits, src);
        } else {
          (record as Float32Array).set(src, offset);
        }
        offset += layer.size;
      }
    }
    if (spilled.length > 0) this.spill(split, spilled, layers, sources);
  }

  /** Appends records to the file in one vectored write per batch, straight from the tensors in float32. */
  private spill(split: CacheSplit, images: { index: number; image: number }[], layers: Layer[], sources: Float32Array[]): void {
    const recordBytes = this.recordBytes;
    const position = this.fileEnd;
    this.fileEnd += images.length * recordBytes;
    const views: Uint8Array[] = [];
    // File records are negative in `where`: -2 - position.
    for (const [k, { index, image }] of images.entries()) {
      this.where[split][index] = -2 - (position + k * recordBytes);
      if (this.half) {
        const bits = new Uint16Array(recordBytes / 2);
        let offset = 0;
        for (const [l, layer] of layers.entries()) {
          const src = sources[l].subarray(image * layer.size, (image + 1) * layer.size);
          const part = bits.subarray(offset, offset + layer.size);
          encodeHalf(this.half, src, part);
          decodeHalf(this.half, part, src);
          offset += layer.size;
        }
        views.push(new Uint8Array(bits.buffer));
      } else {
        for (const [l, layer] of layers.entries()) {
          const src = sources[l];
          views.push(new Uint8Array(src.buffer, src.byteOffset + image * layer.size * 4, layer.size * 4));
        }
      }
    }
    const write = this.handle().then((fh) => writeFully(fh, views, position));
    write.catch(() => undefined);
    this.pendingWrites.push(write);
  }

  /** Waits until at most `pending` batch writes are still running. */
  async flush(pending = 0): Promise<void> {
    while (this.pendingWrites.length > pending) await this.pendingWrites.shift();
  }

  /** The recorded outputs of these images, in this order, as fresh float32 tensors (and float64 CLS rows). */
  async read(split: CacheSplit, indices: readonly number[]): Promise<RecordedBatch> {
    this.checkAlive();
    const layers = this.layers!;
    const n = indices.length;
    const data = layers.map((layer) => new Float32Array(n * layer.size));
    const features = new Float64Array(n * this.width);
    const cls = this.features[split]!;
    const reads: Promise<void>[] = [];
    for (let j = 0; j < n; j++) {
      const index = indices[j];
      features.set(cls.subarray(index * this.width, (index + 1) * this.width), j * this.width);
      const where = this.where[split][index];
      if (where === -1) throw new Error(`teacher cache: image ${index} of the ${split} images was not recorded`);
      if (where >= 0) {
        const record = this.slotView(where);
        let offset = 0;
        for (const [l, layer] of layers.entries()) {
          const dest = data[l].subarray(j * layer.size, (j + 1) * layer.size);
          if (this.half) decodeHalf(this.half, (record as Uint16Array).subarray(offset, offset + layer.size), dest);
          else dest.set((record as Float32Array).subarray(offset, offset + layer.size));
          offset += layer.size;
        }
      } else {
        reads.push(this.readRecord(-2 - where, layers, data, j));
      }
    }
    if (reads.length > 0) {
      await this.flush();
      await Promise.all(reads);
    }
    const tensors = layers.map((layer, l) => ({ dims: [n, layer.tokens, layer.width], data: data[l] }));
    const taps = new Map<number, BlockTap>();
    for (const [l, layer] of layers.entries()) {
      for (const [block, which] of layer.holders) {
        const tap = taps.get(block) ?? ({} as BlockTap);
        tap[which] = tensors[l];
        taps.set(block, tap);
      }
    }
    return { indices: [...indices], output: { features: { rows: n, cols: this.width, data: features }, taps } };
  }

  /** One record from the file: float32 straight into the batch tensors, 16-bit through a buffer. */
  private async readRecord(position: number, layers: Layer[], data: Float32Array[], image: number): Promise<void> {
    const fh = await this.handle();
    if (this.half) {
      const bits = new Uint16Array(this.recordBytes / 2);
      await readFully(fh, [new Uint8Array(bits.buffer)], position);
      let offset = 0;
      for (const [l, layer] of layers.entries()) {
        decodeHalf(this.half, bits.subarray(offset, offset + layer.size), data[l].subarray(image * layer.size, (image + 1) * layer.size));
        offset += layer.size;
      }
    } else {
      const views = layers.map((layer, l) => new Uint8Array(data[l].buffer, image * layer.size * 4, layer.size * 4));
      await readFully(fh, views, position);
    }
  }

  private takeSlot(): number | undefined {
    const free = this.freeSlots.pop();
    if (free !== undefined) {
      this.usedSlots++;
      return free;
    }
    const recordBytes = this.recordBytes;
    const maxSlots = Math.floor(this.settings.memoryBytes / recordBytes);
    if (this.slotsAllocated >= maxSlots) return undefined;
    this.chunkSlots ||= Math.max(1, Math.floor(CHUNK_BYTES / recordBytes));
    if (this.slotsAllocated === this.chunks.length * this.chunkSlots) {
      const slots = Math.min(this.chunkSlots, maxSlots - this.slotsAllocated);
      this.chunks.push(new ArrayBuffer(slots * recordBytes));
    }
    this.usedSlots++;
    return this.slotsAllocated++;
  }

  private slotView(slot: number): Float32Array | Uint16Array {
    const chunk = this.chunks[Math.floor(slot / this.chunkSlots)];
    const offset = (slot % this.chunkSlots) * this.recordBytes;
    const count = this.recordBytes / this.elementBytes;
    return this.half ? new Uint16Array(chunk, offset, count) : new Float32Array(chunk, offset, count);
  }

  private handle(): Promise<FileHandle> {
    this.fileHandle ??= (async () => {
      const path = join(this.settings.spillDir, `transformaly-teacher-cache-${process.pid}-${randomBytes(6).toString('hex')}.tmp`);
      const fh = await open(path, 'wx+', 0o600);
      this.path = path;
      liveFiles.add(path);
      if (!exitHookInstalled) {
        exitHookInstalled = true;
        // A second Ctrl-C exits at once, without unwinding the fit: the files go anyway.
        process.on('exit', () => {
          for (const file of liveFiles) rmSync(file, { force: true });
        });
      }
      return fh;
    })();
    return this.fileHandle;
  }

  private checkAlive(): void {
    if (this.disposed) throw new Error('teacher cache: used after dispose()');
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    this.chunks = [];
    this.features.train = this.features.validation = undefined;
    await Promise.allSettled(this.pendingWrites);
    if (this.fileHandle) {
      const fh = await this.fileHandle.catch(() => undefined);
      await fh?.close();
      if (this.path) {
        await rm(this.path, { force: true });
        liveFiles.delete(this.path);
      }
    }
  }
}

async function writeFully(fh: FileHandle, views: Uint8Array[], position: number): Promise<void> {
  let rest = views;
  while (rest.length > 0) {
    const { bytesWritten } = await fh.writev(rest, position);
    if (bytesWritten === 0) throw new Error('teacher cache: could not write the spill file');
    position += bytesWritten;
    rest = remainder(rest, bytesWritten);
  }
}

/** Reads `views` back to back from `position`; a file shorter than that is an error. */
async function readFully(fh: FileHandle, views: Uint8Array[], position: number): Promise<void> {
  let rest = views;
  while (rest.length > 0) {
    const { bytesRead } = await fh.readv(rest, position);
    if (bytesRead === 0) throw new Error('teacher cache: the spill file ended early (was it changed or truncated?)');
    position += bytesRead;
    rest = remainder(rest, bytesRead);
  }
}

/** What is left of `views` after the first `done` bytes. */
function remainder(views: Uint8Array[], done: number): Uint8Array[] {
  const rest: Uint8Array[] = [];
  for (const view of views) {
    if (done >= view.byteLength) {
      done -= view.byteLength;
      continue;
    }
    rest.push(done > 0 ? view.subarray(done) : view);
    done = 0;
  }
  return rest;
}
