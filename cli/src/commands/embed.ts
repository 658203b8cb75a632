import { batches, createPreprocessor, writeFileAtomic, writeNpy, type ProgressReporter } from '@transformaly/core';
import { loadVitBackbone } from '@transformaly/backbone-vit';
import { OnnxRuntime } from '@transformaly/runtime-onnx';
import { imageItemsFromArgs } from '../images.js';

export interface EmbedOptions {
  checkpoint: string;
  out: string;
  heads?: number;
  imageSize?: number;
  mean?: [number, number, number];
  std?: [number, number, number];
  runtime: string;
  batch: number;
  threads?: number;
  cacheDir?: string;
  offline?: boolean;
  maxPixels?: number;
}

/** Writes the pre-trained features (final-LayerNorm CLS) of images as float32 (N, D) .npy, rows in path order. */
export async function embedCommand(inputs: string[], options: EmbedOptions, progress: ProgressReporter): Promise<void> {
  if (options.runtime !== 'onnx') throw new Error(`--runtime ${options.runtime}: embed runs on "onnx"`);
  if (!options.out.endsWith('.npy')) throw new Error(`--out ${options.out}: expected a file name ending in .npy`);
  const items = await imageItemsFromArgs(inputs, process.cwd(), { maxPixels: options.maxPixels });
  const runtime = new OnnxRuntime({ threads: options.threads, progress });
  const backbone = await loadVitBackbone(
    {
      checkpoint: options.checkpoint,
      heads: options.heads,
      imageSize: options.imageSize,
      mean: options.mean,
      std: options.std,
      cacheDir: options.cacheDir,
      offline: options.offline,
    },
    { runtime, progress },
  );
  const preprocessor = createPreprocessor(backbone.info.preprocess);
  try {
    const width = backbone.info.width;
    const data = new Float32Array(items.length * width);
    const task = progress.task('embedding', items.length);
    let row = 0;
    for await (const batch of batches(items, options.batch, preprocessor, { skipBadFiles: false })) {
      const { features } = await backbone.forward(batch.pixels);
      data.set(features.data, row * width);
      row += features.rows;
      task.tick(features.rows);
    }
    task.done();
    await writeNpy(options.out, { rows: items.length, cols: width, data });
    await writeFileAtomic(options.out.replace(/\.npy$/, '.paths.txt'), `${items.map((i) => i.id).join('\n')}\n`);
    if (backbone.info.untrained) progress.warn(`${backbone.info.id} is an UNTRAINED backbone: these features are from random weights`);
    process.stdout.write(`wrote ${items.length} x ${width} features to ${options.out}\n`);
  } finally {
    await preprocessor.dispose?.();
    await backbone.dispose();
    await runtime.dispose();
  }
}
