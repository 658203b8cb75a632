import { resolve } from 'node:path';
import { detectorScoresCsv, isPathReference, loadPlugin, openDetector, writeFileAtomic, type ProgressReporter, type TransformalyPlugin } from '@transformaly/core';
import { imageItemsFromArgs } from '../images.js';
import { queueOptions, type QueueFlags } from '../queue.js';

export interface ScoreOptions extends QueueFlags {
  detector: string;
  out?: string;
  maxPixels?: number;
  /** `NAME=PATH` pairs: plugins the detector records by name, loaded from the files the user names. */
  plugin?: string[];
  /** Images per job with `--queue`. */
  shardSize?: number;
}

/** Scores images with a saved detector, rebuilt from its folder alone: no config file, no retraining. */
export async function scoreCommand(inputs: string[], options: ScoreOptions, progress: ProgressReporter, signal: AbortSignal): Promise<void> {
  const queue = await queueOptions(options, signal);
  if (!queue && options.shardSize !== undefined) throw new Error('--shard-size applies to scoring spread over workers: give --queue redis://HOST:PORT too');
  const pairs = (options.plugin ?? []).map(pluginPair);
  if (queue) {
    const items = await imageItemsFromArgs(inputs, process.cwd(), { maxPixels: options.maxPixels });
    const { scoreOnQueue } = await import('@transformaly/queue');
    // Files travel as absolute paths (shared, like the detector); package names as they are.
    const plugins = Object.fromEntries(pairs.map(({ name, path }) => [name, isPathReference(path) ? resolve(path) : path]));
    const scores = await scoreOnQueue(
      { ...queue, detector: options.detector, paths: items.map((item) => item.id), maxPixels: options.maxPixels, plugins, shardSize: options.shardSize },
      progress,
    );
    await emit(scores.csv, scores.images, options.out, progress);
    for (const s of scores.skipped) progress.warn(`skipped ${s.id}: ${s.reason}`);
    return;
  }
  const plugins = await givenPlugins(pairs);
  const { detector, dispose } = await openDetector(options.detector, { plugins, progress });
  try {
    const info = detector.parts.backbone.info;
    if (info.untrained) progress.warn(`${options.detector} was fitted on ${info.id}, an UNTRAINED backbone (random weights): these scores are for tests and smoke runs only`);
    const items = await imageItemsFromArgs(inputs, process.cwd(), { maxPixels: options.maxPixels });
    const scores = await detector.score(items);
    await emit(detectorScoresCsv(scores, detector.threshold!), scores.ids.length, options.out, progress);
    for (const s of scores.skipped) progress.warn(`skipped ${s.id}: ${s.reason}`);
  } finally {
    await dispose();
  }
}

async function emit(text: string, count: number, out: string | undefined, progress: ProgressReporter): Promise<void> {
  if (out) {
    await writeFileAtomic(out, text);
    progress.info(`wrote ${count} scores to ${out}`);
  } else {
    process.stdout.write(text);
  }
}

/** `--plugin NAME=PATH`: the plugin's name as the detector records it, and its file or package. */
export function pluginPair(pair: string): { name: string; path: string } {
  const at = pair.indexOf('=');
  if (at <= 0 || at === pair.length - 1) throw new Error(`--plugin ${pair}: expected NAME=PATH (the plugin's name as the detector records it, and its file or package)`);
  return { name: pair.slice(0, at), path: pair.slice(at + 1) };
}

/** Loads each `--plugin NAME=PATH`; the file's plugin must be named NAME, the name the detector records. */
export async function givenPlugins(pairs: { name: string; path: string }[]): Promise<Record<string, TransformalyPlugin>> {
  const plugins: Record<string, TransformalyPlugin> = {};
  for (const { name, path } of pairs) {
    const plugin = await loadPlugin(path, { baseDir: process.cwd() });
    if (plugin.name !== name) throw new Error(`--plugin ${name}=${path}: that plugin is named "${plugin.name}", not "${name}"`);
    plugins[name] = plugin;
  }
  return plugins;
}
