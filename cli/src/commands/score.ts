import { detectorScoresCsv, loadPlugin, openDetector, writeFileAtomic, type ProgressReporter, type TransformalyPlugin } from '@transformaly/core';
import { imageItemsFromArgs } from '../images.js';

export interface ScoreOptions {
  detector: string;
  out?: string;
  maxPixels?: number;
  /** `NAME=PATH` pairs: plugins the detector records by name, loaded from the files the user names. */
  plugin?: string[];
}

/** Scores images with a saved detector, rebuilt from its folder alone: no config file, no retraining. */
export async function scoreCommand(inputs: string[], options: ScoreOptions, progress: ProgressReporter): Promise<void> {
  const plugins = await givenPlugins(options.plugin ?? []);
  const { detector, dispose } = await openDetector(options.detector, { plugins, progress });
  try {
    const info = detector.parts.backbone.info;
    if (info.untrained) progress.warn(`${options.detector} was fitted on ${info.id}, an UNTRAINED backbone (random weights): these scores are for tests and smoke runs only`);
    const items = await imageItemsFromArgs(inputs, process.cwd(), { maxPixels: options.maxPixels });
    const scores = await detector.score(items);
    const text = detectorScoresCsv(scores, detector.threshold!);
    if (options.out) {
      await writeFileAtomic(options.out, text);
      progress.info(`wrote ${scores.ids.length} scores to ${options.out}`);
    } else {
      process.stdout.write(text);
    }
    for (const s of scores.skipped) progress.warn(`skipped ${s.id}: ${s.reason}`);
  } finally {
    await dispose();
  }
}

/** Loads each `--plugin NAME=PATH`; the file's plugin must be named NAME, the name the detector records. */
async function givenPlugins(pairs: string[]): Promise<Record<string, TransformalyPlugin>> {
  const plugins: Record<string, TransformalyPlugin> = {};
  for (const pair of pairs) {
    const at = pair.indexOf('=');
    if (at <= 0 || at === pair.length - 1) throw new Error(`--plugin ${pair}: expected NAME=PATH (the plugin's name as the detector records it, and its file or package)`);
    const name = pair.slice(0, at);
    const plugin = await loadPlugin(pair.slice(at + 1), { baseDir: process.cwd() });
    if (plugin.name !== name) throw new Error(`--plugin ${pair}: that plugin is named "${plugin.name}", not "${name}"`);
    plugins[name] = plugin;
  }
  return plugins;
}
