import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { DETECTOR_SCORES_CSV_HEADER, MANIFEST_FILE, type ProgressReporter } from '@transformaly/core';
import { Coordinator, type CoordinatorOptions, type TrackedJob } from './coordinator.js';
import { JOB_FORMAT, SCORE_JOB, scoreJobId, type ScoreJobData, type ScoreJobResult } from './jobs.js';

export interface QueueScoreOptions extends CoordinatorOptions {
  /** The detector folder, shared with every worker at the same path. */
  detector: string;
  /** The images, in the order of the CSV (`transformaly score` sorts them by path); shared like the detector. */
  paths: string[];
  maxPixels?: number;
  /** `--plugin NAME=PATH`, the paths absolute. */
  plugins?: Record<string, string>;
  /** Images per job (default 8 batches); rounded up to a whole number of the detector's batches. */
  shardSize?: number;
}

export interface QueueScores {
  /** The CSV `transformaly score` writes: `detectorScoresCsv`'s header, then every shard's rows in path order. */
  csv: string;
  skipped: { id: string; reason: string }[];
  images: number;
}

/**
 * `transformaly score` spread over workers: the images are cut into shards of whole batches (so each batch holds the
 * images a local run's would, and the scores are the same to the bit), scored by the workers, and joined in order.
 * Finished shards stay in Redis for a week: rerunning the same command collects them instead of scoring them again.
 */
export async function scoreOnQueue(options: QueueScoreOptions, progress: ProgressReporter): Promise<QueueScores> {
  const detector = resolve(options.detector);
  const manifestFile = join(detector, MANIFEST_FILE);
  let manifestBytes: Buffer;
  try {
    manifestBytes = await readFile(manifestFile);
  } catch (error) {
    throw new Error(`--detector ${options.detector}: cannot read ${manifestFile} (${(error as Error).message}); expected a detector folder written by fit or run`);
  }
  const manifest = JSON.parse(manifestBytes.toString('utf8')) as { config?: { batchSize?: number }; extra?: { backbone?: { id?: string; untrained?: boolean } } };
  if (manifest.extra?.backbone?.untrained) {
    progress.warn(`${options.detector} was fitted on ${manifest.extra.backbone.id}, an UNTRAINED backbone (random weights): these scores are for tests and smoke runs only`);
  }
  const batchSize = manifest.config?.batchSize;
  if (!Number.isInteger(batchSize) || batchSize! < 1) throw new Error(`${manifestFile}: config.batchSize must be a positive integer`);
  const manifestSha256 = createHash('sha256').update(manifestBytes).digest('hex');
  const shardSize = Math.ceil((options.shardSize ?? batchSize! * 8) / batchSize!) * batchSize!;
  const plugins = options.plugins ?? {};
  const shards: string[][] = [];
  for (let i = 0; i < options.paths.length; i += shardSize) shards.push(options.paths.slice(i, i + shardSize));
  if (shards.length === 0) throw new Error('no images to score');
  const key = createHash('sha256')
    .update(JSON.stringify({ manifestSha256, maxPixels: options.maxPixels ?? null, plugins, shardSize, paths: options.paths }))
    .digest('hex')
    .slice(0, 16);

  const coordinator = await Coordinator.open(options, progress);
  try {
    const jobs: TrackedJob<ScoreJobData>[] = [];
    for (const [shard, paths] of shards.entries()) {
      const data: ScoreJobData = { format: JOB_FORMAT, detector, manifestSha256, paths, maxPixels: options.maxPixels, plugins, shard, shards: shards.length };
      const id = scoreJobId(key, shard);
      // The id is a digest of everything the shard's scores depend on: a job found under it is this shard, kept unless it failed.
      await coordinator.enqueue(SCORE_JOB, id, data, (_existing, state) => state !== 'failed');
      jobs.push({ id, subject: `shard ${shard + 1}/${shards.length}`, data, attemptsMade: 0, stalledCounter: 0 });
    }
    progress.info(`score: ${options.paths.length} images in ${shards.length} shards of up to ${shardSize} on ${coordinator.where}; waiting for workers`);
    const outcomes = await coordinator.follow<ScoreJobData, ScoreJobResult>(jobs, {
      noun: 'shards',
      doneBefore: 0,
      requeue: async (job) => void (await coordinator.enqueue(SCORE_JOB, job.id, job.data, () => false)),
      onOutcome: async (_job, outcome) => outcome,
    });
    const parts = [`${DETECTOR_SCORES_CSV_HEADER}\n`];
    const skipped: QueueScores['skipped'] = [];
    const failures: string[] = [];
    for (const job of jobs) {
      const outcome = outcomes.get(job.id)!;
      if (!outcome.ok) {
        failures.push(`  - ${job.subject} (${job.data.paths[0]} ...): ${outcome.error}`);
        continue;
      }
      parts.push(outcome.result.rows);
      skipped.push(...outcome.result.skipped);
    }
    if (failures.length > 0) throw new Error(`scoring failed on ${failures.length} of ${shards.length} shards:\n${failures.join('\n')}`);
    return { csv: parts.join(''), skipped, images: options.paths.length - skipped.length };
  } finally {
    await coordinator.close();
  }
}
