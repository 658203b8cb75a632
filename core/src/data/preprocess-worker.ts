// The preprocessing worker thread (see WorkerPreprocessor in preprocess.ts): resizes and normalises batches of images
// for the spec it was started with, and hands the pixels back without copying them.
import { parentPort, workerData } from 'node:worker_threads';
import type { WorkerAnswer, WorkerRequest } from './preprocess.js';
import { ResizeNormalize } from './resize-normalize.js';
import type { PreprocessSpec } from '../types.js';

const preprocessor = new ResizeNormalize(workerData as PreprocessSpec);

parentPort!.on('message', ({ id, images }: WorkerRequest) => {
  let answer: WorkerAnswer;
  const start = performance.now();
  try {
    answer = { id, pixels: preprocessor.runSync(images), seconds: (performance.now() - start) / 1000 };
  } catch (error) {
    parentPort!.postMessage({ id, error: error instanceof Error ? error.message : String(error) } satisfies WorkerAnswer);
    return;
  }
  parentPort!.postMessage(answer, [answer.pixels.data.buffer as ArrayBuffer]);
});
