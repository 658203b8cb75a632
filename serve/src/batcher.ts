import type { DetectorScores, Tensor } from '@transformaly/core';

/** What one image's entry in a backbone pass gives back. */
export interface ImageResult {
  pretrained: number;
  finetuned?: number;
  combined: number;
  anomalous: boolean;
  /** Images in the pass this image was scored in. */
  batchImages: number;
  /** Milliseconds the image waited in the queue, and the pass took. */
  queueMs: number;
  batchMs: number;
}

export interface BatcherOptions {
  /** Most images per pass. */
  batchSize: number;
  /** How long the oldest waiting image may wait for others before a smaller pass starts, in ms. */
  waitMs: number;
  /** Most images accepted and not yet in a pass (being decoded or waiting); past it `reserve` refuses. */
  maxQueue: number;
  /** Scores one pass: `pixels` holds the images of `ids`, in order. */
  score(pixels: Tensor, ids: string[]): Promise<DetectorScores>;
  /** Told of every pass, for metrics and logs. */
  onBatch?(pass: { images: number; ms: number; error?: unknown }): void;
}

interface Job {
  id: string;
  /** One image, [1, C, H, W]. */
  pixels: Tensor;
  queuedAt: number;
  resolve(result: ImageResult): void;
  reject(error: unknown): void;
}

/**
 * Gathers images from concurrent requests into backbone passes of up to `batchSize` images, one pass at a time (a
 * pass already uses every core). The oldest waiting image starts a pass after `waitMs` even when it is not full, and
 * the next pass starts as soon as the previous one ends, so images that arrive during a pass are decoded meanwhile.
 *
 * Room is counted from the moment a request's images are received: `reserve` before decoding, then `submit` or
 * `release` each reserved image. Each image's result is its own row of the pass, matched by position.
 */
export class MicroBatcher {
  private readonly queue: Job[] = [];
  private reserved = 0;
  private running: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private flushing = false;
  /** Moving average of a pass's milliseconds per image, for Retry-After. */
  private msPerImage = 0;

  constructor(private readonly options: BatcherOptions) {
    for (const key of ['batchSize', 'maxQueue'] as const) {
      if (!Number.isInteger(options[key]) || options[key] < 1) throw new Error(`MicroBatcher: ${key} must be a positive integer, got ${options[key]}`);
    }
    if (!Number.isFinite(options.waitMs) || options.waitMs < 0) throw new Error(`MicroBatcher: waitMs must be a number >= 0, got ${options.waitMs}`);
  }

  /** Images accepted and not yet in a pass. */
  get pending(): number {
    return this.reserved + this.queue.length;
  }

  get full(): boolean {
    return this.pending >= this.options.maxQueue;
  }

  /** Seconds a client should wait before retrying: the time the images ahead of it take, at least 1. */
  retryAfterSeconds(): number {
    return Math.max(1, Math.ceil((this.pending * this.msPerImage) / 1000));
  }

  /** Takes room for `n` images, or none if they do not all fit. */
  reserve(n: number): boolean {
    if (this.pending + n > this.options.maxQueue) return false;
    this.reserved += n;
    return true;
  }

  release(n: number): void {
    this.reserved = Math.max(0, this.reserved - n);
    // A queued pass may have been waiting for these images.
    this.schedule();
  }

  /**
   * Queues one reserved image; resolves with its row of the pass. `signal` withdraws it while it still waits (a
   * request that timed out or whose client left); once in a pass, it is scored and the result dropped.
   */
  submit(id: string, pixels: Tensor, signal?: AbortSignal): Promise<ImageResult> {
    if (pixels.dims[0] !== 1) throw new Error(`MicroBatcher.submit: expected one image, got ${pixels.dims[0]}`);
    this.reserved = Math.max(0, this.reserved - 1);
    return new Promise<ImageResult>((resolve, reject) => {
      const job: Job = { id, pixels, queuedAt: performance.now(), resolve, reject };
      if (signal?.aborted) {
        reject(signal.reason);
        // A queued pass may have been waiting for this image.
        return this.schedule();
      }
      signal?.addEventListener(
        'abort',
        () => {
          const at = this.queue.indexOf(job);
          if (at >= 0) {
            this.queue.splice(at, 1);
            reject(signal.reason);
          }
        },
        { once: true },
      );
      this.queue.push(job);
      this.schedule();
    });
  }

  /** Starts passes without waiting from now on, and resolves when nothing is queued or running (shutdown). */
  async flush(): Promise<void> {
    this.flushing = true;
    this.schedule();
    while (this.running || this.queue.length > 0) {
      await this.running;
      this.schedule();
    }
  }

  private schedule(): void {
    if (this.running || this.queue.length === 0) return;
    const waited = performance.now() - this.queue[0].queuedAt;
    // A pass blocks the main thread, so an image still being decoded when it starts waits for all of it. Waiting for
    // the decodes that would fit in this pass is cheaper, up to about what a pass of the images queued now takes:
    // under steady load this is what keeps passes full (without it, 16 clients got passes of 2.3 images on average).
    const decoding = Math.min(this.reserved, this.options.batchSize - this.queue.length);
    const limit = decoding > 0 ? Math.max(this.options.waitMs, this.msPerImage * this.queue.length) : this.options.waitMs;
    if (this.flushing || this.queue.length >= this.options.batchSize || waited >= limit) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.running = this.runPass(this.queue.splice(0, this.options.batchSize)).finally(() => {
        this.running = undefined;
        this.schedule();
      });
    } else if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.schedule();
      }, limit - waited);
    }
  }

  private async runPass(jobs: Job[]): Promise<void> {
    const start = performance.now();
    const [, ...rest] = jobs[0].pixels.dims;
    const size = jobs[0].pixels.data.length;
    const pixels: Tensor = { dims: [jobs.length, ...rest], data: new Float32Array(jobs.length * size) };
    jobs.forEach((job, i) => pixels.data.set(job.pixels.data, i * size));
    let scores: DetectorScores;
    try {
      scores = await this.options.score(
        pixels,
        jobs.map((job) => job.id),
      );
    } catch (error) {
      this.options.onBatch?.({ images: jobs.length, ms: performance.now() - start, error });
      for (const job of jobs) job.reject(error);
      return;
    }
    const ms = performance.now() - start;
    // Rows are matched to requests by position; a stage that reordered or dropped rows must not answer anyone.
    if (scores.ids.length !== jobs.length || jobs.some((job, i) => scores.ids[i] !== job.id)) {
      const error = new Error(`a backbone pass of ${jobs.length} images returned the scores of [${scores.ids.join(', ')}], not of [${jobs.map((j) => j.id).join(', ')}]`);
      this.options.onBatch?.({ images: jobs.length, ms, error });
      for (const job of jobs) job.reject(error);
      return;
    }
    this.msPerImage = this.msPerImage === 0 ? ms / jobs.length : 0.8 * this.msPerImage + 0.2 * (ms / jobs.length);
    this.options.onBatch?.({ images: jobs.length, ms });
    jobs.forEach((job, i) => {
      job.resolve({
        pretrained: scores.pretrained[i],
        finetuned: scores.finetuned?.[i],
        combined: scores.combined[i],
        anomalous: scores.anomalous[i],
        batchImages: jobs.length,
        queueMs: start - job.queuedAt,
        batchMs: ms,
      });
    });
  }
}
