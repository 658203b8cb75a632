import { Worker } from 'node:worker_threads';
import { stageProfile } from '../profile.js';
import type { JsonSchema, PreprocessSpec, Preprocessor, RgbImage, Tensor } from '../types.js';
import { checkSpec, ResizeNormalize } from './resize-normalize.js';

/** JSON schema of a `PreprocessSpec`. */
export const preprocessSpecSchema: JsonSchema = {
  type: 'object',
  properties: {
    size: { type: 'array', items: { type: 'integer', minimum: 1 }, minItems: 2, maxItems: 2, description: '[height, width]' },
    resample: { enum: ['bilinear', 'bicubic', 'nearest'] },
    mean: { type: 'array', items: { type: 'number' }, minItems: 3, maxItems: 3 },
    std: { type: 'array', items: { type: 'number', exclusiveMinimum: 0 }, minItems: 3, maxItems: 3 },
  },
  required: ['size', 'resample', 'mean', 'std'],
  additionalProperties: false,
};

/** A message to the preprocessing worker, and its answer. */
export interface WorkerRequest {
  id: number;
  images: RgbImage[];
}
export type WorkerAnswer = { id: number; pixels: Tensor; seconds: number } | { id: number; error: string };

/**
 * The worker's file. Tests run the TypeScript sources through vite, but a worker thread runs plain JavaScript, so
 * from the sources it is the build's copy (`npm test` builds first).
 */
function workerFile(): URL {
  const here = import.meta.url;
  return here.endsWith('.ts') ? new URL('../../dist/data/preprocess-worker.js', here) : new URL('./preprocess-worker.js', here);
}

/**
 * `ResizeNormalize` in a worker thread: onnxruntime runs on the main thread (its `run` blocks it), so resizing the
 * next batch there would wait for the backbone; in a worker it overlaps it. Images are copied to the worker; the
 * pixels come back transferred, not copied. The thread keeps the process alive only while a batch is in it.
 */
class WorkerPreprocessor implements Preprocessor {
  readonly spec: PreprocessSpec;
  private worker: Worker | undefined;
  private readonly pending = new Map<number, { resolve: (t: Tensor) => void; reject: (e: Error) => void }>();
  private nextId = 0;

  constructor(spec: PreprocessSpec) {
    this.spec = checkSpec(spec);
  }

  run(images: RgbImage[]): Promise<Tensor> {
    const [height, width] = this.spec.size;
    if (images.length === 0) return Promise.resolve({ dims: [0, 3, height, width], data: new Float32Array(0) });
    const worker = this.start();
    const id = this.nextId++;
    // A copy of each image's own values (a view's whole buffer would otherwise be cloned), handed over without a second copy.
    const copies = images.map((image) => ({ width: image.width, height: image.height, data: image.data instanceof Float32Array ? image.data.slice() : Float32Array.from(image.data ?? []) }));
    return new Promise<Tensor>((resolve, reject) => {
      if (this.pending.size === 0) worker.ref();
      this.pending.set(id, { resolve, reject });
      worker.postMessage({ id, images: copies } satisfies WorkerRequest, copies.map((c) => c.data.buffer));
    });
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(workerFile(), { workerData: this.spec });
    worker.unref();
    worker.on('message', (answer: WorkerAnswer) => {
      const request = this.pending.get(answer.id);
      if (!request) return;
      this.settle(answer.id);
      if ('error' in answer) request.reject(new Error(answer.error));
      else {
        stageProfile.add('images: preprocess (worker)', answer.seconds);
        request.resolve(answer.pixels);
      }
    });
    const fail = (error: Error) => {
      this.worker = undefined;
      const requests = [...this.pending.values()];
      this.pending.clear();
      for (const r of requests) r.reject(new Error(`the preprocessing worker failed: ${error.message}`, { cause: error }));
    };
    worker.on('error', fail);
    worker.on('exit', (code) => {
      if (this.worker === worker) fail(new Error(`it exited with code ${code}`));
    });
    this.worker = worker;
    return worker;
  }

  private settle(id: number): void {
    this.pending.delete(id);
    if (this.pending.size === 0) this.worker?.unref();
  }

  async dispose(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    await worker?.terminate();
  }
}

/**
 * Resizes each image to `spec.size` (Pillow's resampling on float pixels: bilinear and bicubic antialias when
 * downsampling) and normalises each channel as `(x - mean) / std`, giving an NCHW float32 tensor.
 *
 * Resizing runs on the decoded float values; torchvision on an 8-bit PIL image would round the resized pixels to
 * 8 bits first, so results differ from that pipeline by at most half a grey level before normalisation.
 *
 * By default the work runs in a worker thread (`dispose` ends it), so that it overlaps the backbone on the main
 * thread; `thread: 'main'` runs it on the calling thread.
 */
export function createPreprocessor(spec: PreprocessSpec, options: { thread?: 'worker' | 'main' } = {}): Preprocessor {
  return options.thread === 'main' ? new ResizeNormalize(spec) : new WorkerPreprocessor(spec);
}
