// What travels through the queue: the jobs' data and results, and the run folder's marker that proves a worker sees
// the coordinator's folder. Job data is checked by the worker before use: it comes from Redis, not from this process.
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { caseFolderName, writeFileAtomic, type CaseResult, type CaseSettings, type ResolvedConfig } from '@transformaly/core';

/** The version of the job format; a worker refuses jobs of another (coordinator and workers of other releases). */
export const JOB_FORMAT = 'transformaly-queue/1';

/** One protocol case of a run, fitted and scored into its folder under the shared `runDir`. */
export interface CaseJobData {
  format: typeof JOB_FORMAT;
  runId: string;
  /** Absolute; the same path on every machine (a shared file system). */
  runDir: string;
  /** The run folder's token (`queue-run.json`): a worker whose `runDir` holds another token sees another folder. */
  token: string;
  caseId: string;
  /** The case's settings as the coordinator computed them; the worker recomputes them from its view of the data. */
  settings: { hash: string; data: CaseSettings['data'] };
  /** The resolved config: the worker needs no config file. Paths in it are absolute, as the coordinator resolved them. */
  config: ResolvedConfig;
}

/** One shard of `score --queue`: consecutive images of the sorted list, scored by a saved detector. */
export interface ScoreJobData {
  format: typeof JOB_FORMAT;
  /** Absolute path of the detector folder, shared like the images. */
  detector: string;
  /** sha256 of the detector's manifest.json as the coordinator read it: the worker must read the same detector. */
  manifestSha256: string;
  paths: string[];
  maxPixels?: number;
  /** `score --plugin NAME=PATH`: plugins the detector names, from these files (subject to the worker's allow-list). */
  plugins: Record<string, string>;
  shard: number;
  shards: number;
}

export interface ScoreJobResult {
  /** The shard's rows of `detectorScoresCsv`, without the header. */
  rows: string;
  skipped: { id: string; reason: string }[];
}

export type CaseJobResult = CaseResult;

export const CASE_JOB = 'case';
export const SCORE_JOB = 'score';

/**
 * `<runId>.<token>.<case folder>`: stable, so that a rerun of the coordinator finds its jobs, and apart from the jobs
 * of the same config run into another folder (the token's first 8 characters). BullMQ forbids `:` in ids.
 */
export function caseJobId(runId: string, token: string, caseId: string): string {
  return `${runId}.${token.slice(0, 8)}.${caseFolderName(caseId)}`;
}

export function scoreJobId(key: string, shard: number): string {
  return `score.${key}.${shard}`;
}

/** The marker a distributed run keeps in its folder; workers compare its token with their job's. */
export const RUN_MARKER = 'queue-run.json';

interface RunMarker {
  format: typeof JOB_FORMAT;
  runId: string;
  token: string;
}

/** The run folder's token: read from its marker, or a new one written there (once per run folder, kept across reruns). */
export async function runToken(runDir: string, runId: string): Promise<string> {
  const file = join(runDir, RUN_MARKER);
  const existing = await readMarker(file);
  if (existing) return existing.token;
  const marker: RunMarker = { format: JOB_FORMAT, runId, token: randomBytes(16).toString('hex') };
  await writeFileAtomic(file, `${JSON.stringify(marker, null, 2)}\n`);
  return marker.token;
}

/**
 * Throws unless this machine sees the coordinator's run folder at `runDir`: its marker must be there, with the job's
 * token. The message says what to share.
 */
export async function checkRunFolder(runDir: string, token: string): Promise<void> {
  const file = join(runDir, RUN_MARKER);
  let marker: RunMarker | undefined;
  try {
    marker = await readMarker(file);
  } catch (error) {
    throw new Error(`this worker cannot read ${file}: ${(error as Error).message}`);
  }
  const share = 'outputDir must be one folder shared by the coordinator and every worker, at the same path (e.g. an NFS mount); see docs/Reference/Distributed.md';
  if (!marker) throw new Error(`this worker cannot see the run folder ${runDir} (it has no ${RUN_MARKER}): ${share}`);
  if (marker.token !== token) {
    throw new Error(`the run folder ${runDir} on this worker is not the coordinator's (its ${RUN_MARKER} belongs to another run): ${share}`);
  }
}

async function readMarker(file: string): Promise<RunMarker | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    throw error;
  }
  const marker = JSON.parse(text) as RunMarker;
  if (marker?.format !== JOB_FORMAT || typeof marker.token !== 'string') throw new Error(`${file} is not a run marker of format ${JOB_FORMAT}`);
  return marker;
}

/** Checks a case job's data as it came from Redis; the message names the first field that is off. */
export function checkCaseJob(data: unknown): CaseJobData {
  const d = checkFormat(data);
  for (const key of ['runId', 'runDir', 'token', 'caseId'] as const) field(d, key, 'a string', typeof d[key] === 'string' && d[key] !== '');
  const settings = d.settings as Record<string, unknown> | undefined;
  field(d, 'settings.hash', 'a string', typeof settings?.hash === 'string');
  field(d, 'settings.data', 'an object', typeof settings?.data === 'object' && settings.data !== null);
  field(d, 'config', 'an object (the resolved config)', typeof d.config === 'object' && d.config !== null && !Array.isArray(d.config));
  return d as unknown as CaseJobData;
}

/** Checks a score job's data as it came from Redis. */
export function checkScoreJob(data: unknown): ScoreJobData {
  const d = checkFormat(data);
  field(d, 'detector', 'a string', typeof d.detector === 'string' && d.detector !== '');
  field(d, 'manifestSha256', 'a string', typeof d.manifestSha256 === 'string');
  field(d, 'paths', 'an array of strings', Array.isArray(d.paths) && d.paths.every((p) => typeof p === 'string'));
  field(d, 'maxPixels', 'a positive integer or absent', d.maxPixels === undefined || (Number.isInteger(d.maxPixels) && (d.maxPixels as number) > 0));
  field(
    d,
    'plugins',
    'an object of strings',
    typeof d.plugins === 'object' && d.plugins !== null && Object.values(d.plugins).every((p) => typeof p === 'string'),
  );
  for (const key of ['shard', 'shards'] as const) field(d, key, 'an integer', Number.isInteger(d[key]));
  return d as unknown as ScoreJobData;
}

function checkFormat(data: unknown): Record<string, unknown> {
  const d = (typeof data === 'object' && data !== null ? data : {}) as Record<string, unknown>;
  if (d.format !== JOB_FORMAT) {
    throw new Error(`the job's format is ${JSON.stringify(d.format)}, but this worker reads ${JOB_FORMAT}: run workers of the coordinator's version of Transformaly`);
  }
  return d;
}

function field(d: Record<string, unknown>, name: string, expected: string, ok: boolean): void {
  if (!ok) throw new Error(`the job's data is malformed: "${name}" must be ${expected}`);
}
