import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setupDifference } from '../distill/checkpoint.js';
import { reasonOf, writeFileAtomic } from '../io/atomic.js';
import { ensureWritableFolder, removeStaleTemps } from '../io/folders.js';
import { checkSafeName, resolveInside } from '../io/paths.js';
import { evaluateScores, formatTable, summarizeCases, type CaseSummary } from '../metrics/index.js';
import type { JsonObject, JsonValue, ProtocolCase, ResolvedConfig } from '../types.js';
import type { Pipeline } from './compose.js';
import { caseScoresCsv, mergeScoresCsv } from './scores.js';

export interface CaseResult {
  caseId: string;
  mode: ProtocolCase['mode'];
  className: string;
  trainImages: number;
  heldOutImages: number;
  testImages: number;
  anomalousTestImages: number;
  threshold: number;
  /** Per feature space (`pretrained`, `finetuned`, `combined`): AUROC and average precision. */
  metrics: Record<string, { auroc: number; averagePrecision: number }>;
  seconds: { fit: number; score: number };
  skipped: { id: string; reason: string }[];
}

export interface RunResults {
  runId: string;
  untrainedBackbone: boolean;
  backbone: { id: string; sha256: string };
  /** The runtime that ran the backbone: name, device, threads, and what its `describe()` adds (absent in older runs). */
  runtime?: JsonObject;
  /** The finished cases, in the protocol's order. */
  cases: CaseResult[];
  /** The cases that could not be computed, with their errors (a distributed run goes on without them; absent in older runs). */
  failed?: FailedCase[];
  /** AUROC per case and space, with the mean row, as in the paper's tables. */
  auroc: CaseSummary;
  averagePrecision: CaseSummary;
  config: ResolvedConfig;
  packages: Record<string, string>;
}

/**
 * What one case's results depend on, kept as `cases/<case>/settings.json` when the case starts: a rerun in the same
 * run folder keeps or resumes the case only when these are the same.
 */
export interface CaseSettings {
  /** sha256 (hex) of `config` and `data`. */
  hash: string;
  /** The resolved config without `outputDir` and `protocol.classes`, which only choose where and which cases run. */
  config: JsonObject;
  /** The case's images: how many, and the sha256 of their ids (with the test labels) in order. */
  data: { train: number; test: number; trainIds: string; testIds: string };
}

export interface RunOptions {
  /** The run folder, e.g. `runDirOf(config.outputDir, runId)`. */
  runDir: string;
  signal?: AbortSignal;
  /** Recompute the cases whose settings differ from those their folder was computed with, instead of refusing. */
  force?: boolean;
}

/** The run folder holds cases computed with other settings (and `force` was not given). */
export class RunConflictError extends Error {
  override readonly name = 'RunConflictError';
}

const SETTINGS_FILE = 'settings.json';
const RESULT_FILE = 'result.json';

/** A run id derived from the resolved config, so that the same config finds its earlier run. */
export function runIdOf(config: ResolvedConfig): string {
  const { outputDir: _ignored, ...rest } = config;
  return createHash('sha256').update(stableStringify(rest)).digest('hex').slice(0, 12);
}

/** `<outputDir>/<runId>`, refused unless the run id is a plain folder name (no separators, no `..`, no leading dot). */
export function runDirOf(outputDir: string, runId: string): string {
  return resolveInside(outputDir, checkSafeName(runId, 'run id'));
}

/** The folder name of a case inside a run folder: its id with each run of other characters than [A-Za-z0-9._-] as `_`. */
export function caseFolderName(caseId: string): string {
  return caseId.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^\./, '_');
}

export function caseSettings(config: ResolvedConfig, protocolCase: ProtocolCase): CaseSettings {
  const { outputDir: _out, protocol, ...rest } = config;
  const { classes: _classes, ...protocolRest } = protocol;
  const caseConfig = JSON.parse(JSON.stringify({ ...rest, protocol: protocolRest })) as JsonObject;
  const digest = (parts: string[]) => {
    const hash = createHash('sha256');
    for (const p of parts) hash.update(p).update('\0');
    return hash.digest('hex');
  };
  const data = {
    train: protocolCase.train.length,
    test: protocolCase.test.length,
    trainIds: digest(protocolCase.train.map((item) => item.id)),
    testIds: digest(protocolCase.test.map((t) => `${t.item.id}\t${t.anomalous ? 1 : 0}`)),
  };
  return { hash: createHash('sha256').update(stableStringify({ config: caseConfig, data })).digest('hex'), config: caseConfig, data };
}

/** What differs between the settings a case folder was computed with and `now`; undefined when nothing does. */
async function settingsChange(caseDir: string, now: CaseSettings): Promise<string | undefined> {
  let saved: CaseSettings;
  try {
    saved = JSON.parse(await readFile(join(caseDir, SETTINGS_FILE), 'utf8')) as CaseSettings;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') return `its ${SETTINGS_FILE} cannot be read (${(error as Error).message})`;
    // Written by a version that kept no settings: only a finished case is at stake (a checkpoint checks its own).
    return existsSync(join(caseDir, RESULT_FILE)) ? `it was computed by an earlier version of Transformaly that did not record its settings` : undefined;
  }
  if (saved?.hash === now.hash) return undefined;
  const configChange = setupDifference((saved?.config ?? null) as JsonValue, now.config);
  if (configChange) return configChange;
  const before = saved?.data ?? ({} as Partial<CaseSettings['data']>);
  if (before.train !== now.data.train) return `training images: saved ${before.train}, now ${now.data.train}`;
  if (before.test !== now.data.test) return `test images: saved ${before.test}, now ${now.data.test}`;
  if (before.trainIds !== now.data.trainIds) return `the training images differ (same count, ${now.data.train})`;
  if (before.testIds !== now.data.testIds) return `the test images or their labels differ (same count, ${now.data.test})`;
  return `its ${SETTINGS_FILE} does not match its own contents`;
}

/** One case of a run: its protocol case, where its outputs go, and the settings its results depend on. */
export interface RunCase {
  protocolCase: ProtocolCase;
  /** 0-based position among the run's cases, and their number: for progress lines. */
  index: number;
  total: number;
  /** `<runDir>/cases/<case>`: settings.json, the fitted detector, scores.csv, and result.json written last. */
  caseDir: string;
  /** `<runDir>/checkpoints/<case>`: the distiller's per-epoch checkpoint while the case is being fitted. */
  checkpointDir: string;
  settings: CaseSettings;
}

/** A case that could not be computed, as `results.json` reports it. */
export interface FailedCase {
  caseId: string;
  /** The error of its last attempt. */
  error: string;
  attempts: number;
}

/** Every protocol case of the config, with its folders under `runDir` and its settings. Reads no folder. */
export async function runCases(pipeline: Pipeline, runDir: string): Promise<RunCase[]> {
  const cases = await pipeline.cases();
  return cases.map((protocolCase, index) => ({
    protocolCase,
    index,
    total: cases.length,
    caseDir: resolveInside(runDir, 'cases', caseFolderName(protocolCase.id)),
    checkpointDir: resolveInside(runDir, 'checkpoints', caseFolderName(protocolCase.id)),
    settings: caseSettings(pipeline.config, protocolCase),
  }));
}

/** Whether the case's results are in its folder (`result.json` is written last). */
export function isCaseDone(runCase: RunCase): boolean {
  return existsSync(join(runCase.caseDir, RESULT_FILE));
}

/**
 * Gets the run folder ready for the config's cases: creates it, checks that every case already there was computed
 * with this config's settings (all cases before any is fitted, so a conflict is reported at once, not hours into the
 * run), and with `force` removes the cases whose settings changed. Returns every case of the run.
 */
export async function prepareRun(pipeline: Pipeline, options: Omit<RunOptions, 'signal'>): Promise<RunCase[]> {
  const { runDir, force = false } = options;
  const progress = pipeline.progress;
  await ensureWritableFolder(runDir, 'run folder');
  await removeStaleTemps(runDir);
  const backbone = await pipeline.backbone();
  if (backbone.info.untrained) {
    progress.warn(`the backbone ${backbone.info.id} has random weights: every result of this run is from an UNTRAINED model`);
  }
  const cases = await runCases(pipeline, runDir);
  const changed: { runCase: RunCase; change: string }[] = [];
  for (const runCase of cases) {
    const change = await settingsChange(runCase.caseDir, runCase.settings);
    if (change) changed.push({ runCase, change });
  }
  if (changed.length > 0 && !force) {
    throw new RunConflictError(
      `${runDir} holds cases computed with other settings than this config's:\n` +
        changed.map((c) => `  - ${c.runCase.protocolCase.id}: ${c.change}`).join('\n') +
        '\nUse another --run-id (or none: the default run id follows the config), or rerun with --force to recompute these cases',
    );
  }
  for (const { runCase, change } of changed) {
    progress.warn(`case ${runCase.protocolCase.id}: recomputing (--force), its settings changed: ${change}`);
    await rm(runCase.caseDir, { recursive: true, force: true });
    await rm(runCase.checkpointDir, { recursive: true, force: true });
  }
  return cases;
}

/**
 * Fits and scores one case into its folder, resuming from its distiller checkpoint when there is one, and returns its
 * result; a case already finished with these settings is returned as it is. The local run and a queue worker both
 * compute cases with this function, so a case's files are the same whoever computes it.
 */
export async function runCase(pipeline: Pipeline, runCase: RunCase, options: { signal?: AbortSignal } = {}): Promise<CaseResult> {
  const { protocolCase, caseDir, checkpointDir, settings } = runCase;
  const { signal } = options;
  const progress = pipeline.progress;
  const position = `case ${runCase.index + 1}/${runCase.total} ${protocolCase.id}`;
  const change = await settingsChange(caseDir, settings);
  if (change) throw new RunConflictError(`${caseDir} was computed with other settings than this case's: ${change}`);
  await removeStaleTemps(caseDir);
  await removeStaleTemps(checkpointDir);
  const resultFile = join(caseDir, RESULT_FILE);
  if (existsSync(resultFile)) {
    progress.info(`${position}: already done, kept`);
    return JSON.parse(await readFile(resultFile, 'utf8')) as CaseResult;
  }
  await writeFileAtomic(join(caseDir, SETTINGS_FILE), JSON.stringify(settings, null, 2));
  progress.info(`${position}: ${protocolCase.train.length} normal training images, ${protocolCase.test.length} test images`);
  const detector = await pipeline.createDetector();
  try {
    const t0 = performance.now();
    const fit = await detector.fit(protocolCase.train, { checkpointDir, signal });
    const t1 = performance.now();
    const scores = await detector.score(protocolCase.test.map((t) => t.item), `scoring test images of ${protocolCase.id}`);
    const t2 = performance.now();
    const anomalousById = new Map(protocolCase.test.map((t) => [t.item.id, t.anomalous]));
    const labelById = new Map(protocolCase.test.map((t) => [t.item.id, t.item.label]));
    const anomalous = scores.ids.map((id) => anomalousById.get(id)!);
    const metrics: CaseResult['metrics'] = {};
    for (const space of [...detector.spaces, 'combined'] as const) {
      const evaluation = evaluateScores({ normality: scores[space]!, anomalous });
      metrics[space] = { auroc: evaluation.auroc, averagePrecision: evaluation.averagePrecision };
    }
    const result: CaseResult = {
      caseId: protocolCase.id,
      mode: protocolCase.mode,
      className: protocolCase.className,
      trainImages: fit.fitImages,
      heldOutImages: fit.heldOutImages,
      testImages: scores.ids.length,
      anomalousTestImages: anomalous.filter(Boolean).length,
      threshold: fit.threshold,
      metrics,
      seconds: { fit: (t1 - t0) / 1000, score: (t2 - t1) / 1000 },
      skipped: [...fit.skipped, ...scores.skipped],
    };
    await detector.save(join(caseDir, 'detector'), { caseId: protocolCase.id });
    await writeFileAtomic(join(caseDir, 'scores.csv'), caseScoresCsv(protocolCase.id, scores, anomalous, labelById));
    // Written last: its presence marks the case as finished.
    await writeFileAtomic(resultFile, JSON.stringify(result, null, 2));
    // The saved detector holds the best students; the training checkpoint (about 1 GB for ViT-B) is no longer needed.
    await rm(checkpointDir, { recursive: true, force: true });
    const line = Object.entries(metrics).map(([space, m]) => `${space} ${m.auroc.toFixed(4)}`).join(', ');
    progress.info(`case ${protocolCase.id}: AUROC ${line}`);
    return result;
  } finally {
    await detector.dispose();
  }
}

/**
 * Fits and scores every protocol case of the config, writing `results.json`, `scores.csv` and the fitted detector
 * of each case under `runDir`. A case whose results are already there, computed with the same settings, is kept,
 * so an interrupted run resumes; a case computed with other settings is refused (or recomputed with `force`).
 */
export async function runProtocol(pipeline: Pipeline, options: RunOptions): Promise<RunResults> {
  const cases = await prepareRun(pipeline, options);
  for (const c of cases) {
    options.signal?.throwIfAborted();
    await runCase(pipeline, c, { signal: options.signal });
  }
  return assembleRunResults(pipeline, options.runDir, cases);
}

/**
 * Writes the run's `results.json` and `scores.csv` from the folders of its finished cases, in the protocol's order;
 * `failed` lists the cases that could not be computed (a distributed run reports them instead of stopping). The
 * local run and the queue's coordinator both end with this function, so they write the same files.
 */
export async function assembleRunResults(pipeline: Pipeline, runDir: string, cases: RunCase[], failed: FailedCase[] = []): Promise<RunResults> {
  const failedIds = new Set(failed.map((f) => f.caseId));
  const finished = cases.filter((c) => !failedIds.has(c.protocolCase.id));
  if (finished.length === 0) {
    throw new Error(`no case of the run ${runDir} finished:\n${failed.map((f) => `  - ${f.caseId}: ${f.error}`).join('\n')}`);
  }
  const results: CaseResult[] = [];
  const parts: { text: string; file: string }[] = [];
  for (const c of finished) {
    const resultFile = join(c.caseDir, RESULT_FILE);
    let text: string;
    try {
      text = await readFile(resultFile, 'utf8');
    } catch (error) {
      throw new Error(`case ${c.protocolCase.id} has no result in ${resultFile} (${reasonOf(error)})`, { cause: error });
    }
    results.push(JSON.parse(text) as CaseResult);
    const scoresFile = join(c.caseDir, 'scores.csv');
    parts.push({ text: await readFile(scoresFile, 'utf8'), file: scoresFile });
  }
  const backbone = await pipeline.backbone();
  const runtime = await pipeline.runtime();
  const summary = (metric: 'auroc' | 'averagePrecision') =>
    summarizeCases(results.map((c) => ({ caseId: c.caseId, metrics: Object.fromEntries(Object.entries(c.metrics).map(([s, m]) => [s, m[metric]])) })));
  const runResults: RunResults = {
    runId: runIdOf(pipeline.config),
    untrainedBackbone: backbone.info.untrained,
    backbone: { id: backbone.info.id, sha256: backbone.info.sha256 },
    runtime: { name: runtime.name, device: runtime.device, threads: runtime.threads, ...(await runtime.describe?.()) },
    cases: results,
    failed,
    auroc: summary('auroc'),
    averagePrecision: summary('averagePrecision'),
    config: pipeline.config,
    packages: await pipeline.packageVersions(),
  };
  await writeFileAtomic(join(runDir, 'scores.csv'), mergeScoresCsv(parts));
  await writeFileAtomic(join(runDir, 'results.json'), JSON.stringify(runResults, null, 2));
  return runResults;
}

/** The AUROC table of a run, for the terminal. */
export function formatRunTable(results: RunResults): string {
  const note = results.untrainedBackbone ? '\n(UNTRAINED backbone: random weights, for tests and smoke runs only)' : '';
  return `AUROC (%)\n${formatTable(results.auroc, { percent: true })}${note}`;
}

export function stableStringify(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableStringify((value as JsonObject)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}
