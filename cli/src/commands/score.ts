import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createPipeline, csvField, writeFileAtomic, type ProgressReporter, type TransformalyConfig } from '@transformaly/core';
import { imageItemsFromArgs } from '../images.js';

/** Scores images with a saved detector, rebuilt from the config stored in its manifest: no retraining. */
export async function scoreCommand(
  inputs: string[],
  options: { detector: string; out?: string; maxPixels?: number },
  progress: ProgressReporter,
): Promise<void> {
  let manifest: { config?: TransformalyConfig };
  try {
    manifest = JSON.parse(await readFile(join(options.detector, 'manifest.json'), 'utf8'));
  } catch (error) {
    throw new Error(`${options.detector}: not a detector folder (no readable manifest.json: ${(error as Error).message})`);
  }
  const pipeline = await createPipeline(manifest.config as TransformalyConfig, { configFile: join(options.detector, 'manifest.json'), progress });
  try {
    const detector = await pipeline.loadDetector(options.detector);
    const info = detector.parts.backbone.info;
    if (info.untrained) progress.warn(`${options.detector} was fitted on ${info.id}, an UNTRAINED backbone (random weights): these scores are for tests and smoke runs only`);
    const items = await imageItemsFromArgs(inputs, process.cwd(), { maxPixels: options.maxPixels });
    const scores = await detector.score(items);
    const lines = ['path,pretrained,finetuned,combined,threshold,anomalous'];
    for (let i = 0; i < scores.ids.length; i++) {
      lines.push(
        [csvField(scores.ids[i]), scores.pretrained[i], scores.finetuned?.[i] ?? '', scores.combined[i], detector.threshold, scores.anomalous[i] ? 1 : 0].join(','),
      );
    }
    const text = `${lines.join('\n')}\n`;
    if (options.out) {
      await writeFileAtomic(options.out, text);
      progress.info(`wrote ${scores.ids.length} scores to ${options.out}`);
    } else {
      process.stdout.write(text);
    }
    for (const s of scores.skipped) progress.warn(`skipped ${s.id}: ${s.reason}`);
  } finally {
    await pipeline.dispose();
  }
}
