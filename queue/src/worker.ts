import { Job, UnrecoverableError, WaitingError, Worker } from 'bullmq';
import { createHash } from 'node:crypto';
import { readFile, realpath } from 'node:fs/promises';
import { hostname } from 'node:os';
import { isAbsolute, join, relative, resolve } from 'node:path';
import {
  createPipeline,
  decodeImage,
  detectorScoresCsv,
  ensureWritableFolder,
  formatDuration,
  isPathReference,
  loadPlugin,
  MANIFEST_FILE,
  openDetector,
  runCase,
  runCases,
  STAGE_SLOTS,
  type OpenedDetector,
  type Pipeline,
  type ProgressReporter,
  type ResolvedConfig,
  type RunCase,
  type TransformalyConfig,
  type TransformalyPlugin,
} from '@transformaly/core';
import { connect, disconnect, displayUrl, queueNameOf, type QueueAddress } from './connection.js';
import { CASE_JOB, checkCaseJob, checkRunFolder, checkScoreJob, SCORE_JOB, type CaseJobResult, type ScoreJobResult } from './jobs.js';
import { JobReporter, SwitchingReporter } from './progress.js';

export interface WorkerOptions extends QueueAddress {
  /** Jobs run at once by this worker (default 1). Each has its own pipeline (backbone, sessions) while it runs. */
  concurrency?: number;
  /** Shown on the coordinator and kept on each job (default `<hostname>:<pid>`). */
  workerName?: string;
  /**
   * Folders from which a job's config may load plugin files. A job naming a plugin file elsewhere is refused: its
   * code would run here. Built-in stages and installed packages need no permission. Default: none.
   */
  allowPlugins?: string[];
  /** How long a job's lock lasts without renewal (ms; default 120 000): a killed worker's job is taken over after it. */
  lockDuration?: number;
  /** How often this worker looks for jobs of dead workers (ms; default 60 000). */
  stalledInterval?: number;
  /** How often one job may be taken over from a dead worker before it fails (default 2). */
  maxStalledCount?: number;
  progress: ProgressReporter;
}

export interface QueueWorker {
  readonly name: string;
  /**
   * Stops taking jobs; the running ones stop at their next step and go back to the queue without using an attempt
   * (a case resumes from its checkpoint wherever it runs next). Resolves once they are back and Redis is closed.
   */
  close(): Promise<void>;
  /** Resolves when the worker has closed. */
  closed: Promise<void>;
}

/** A pipeline kept between jobs of the same config: building one loads the backbone, which is the slow part. */
interface DetectorEntry {
  opened: Promise<OpenedDetector>;
  reporter: SwitchingReporter;
  busy: number;
}

interface PipelineEntry {
  key: string;
  pipeline: Pipeline;
  reporter: SwitchingReporter;
  cases: Map<string, Promise<RunCase[]>>;
  busy: boolean;
}

/**
 * Takes `case` and `score` jobs from the queue and runs them with the config or detector each job names. The worker
 * trusts its queue: a job's config names the plugins this process loads, and the folders it reads and writes. Only
 * trusted producers may reach the Redis server; plugin files load only from `allowPlugins`.
 */
export async function startWorker(options: WorkerOptions): Promise<QueueWorker> {
  /** The worker's own stderr; each job also reports to Redis through its JobReporter. */
  const out = options.progress;
  const name = options.workerName ?? `${hostname()}:${process.pid}`;
  const concurrency = options.concurrency ?? 1;
  const prefixed = concurrency > 1;
  const allowed = await Promise.all((options.allowPlugins ?? []).map((dir) => realFolder(dir)));
  const connection = connect(options, out, `worker ${name}`);
  const pipelines: PipelineEntry[] = [];
  const detectors = new Map<string, DetectorEntry>();
  let stopping = false;

  const processor = async (job: Job, token: string | undefined, signal?: AbortSignal): Promise<CaseJobResult | ScoreJobResult> => {
    const subject = job.name === CASE_JOB ? `case ${(job.data as { caseId?: string })?.caseId}` : `score shard ${(job.data as { shard?: number })?.shard! + 1}`;
    const reporter = new JobReporter(out, prefixed ? `[${subject}] ` : '', job, name);
    const started = Date.now();
    const attempts = job.opts.attempts ?? 1;
    out.info(`job ${job.id} (${subject}): started, attempt ${job.attemptsMade + 1}/${attempts}`);
    try {
      const result = job.name === CASE_JOB ? await processCase(job, reporter, signal) : job.name === SCORE_JOB ? await processScore(job, reporter) : undefined;
      if (result === undefined) throw new UnrecoverableError(`unknown job name "${job.name}" (expected ${CASE_JOB} or ${SCORE_JOB})`);
      out.info(`job ${job.id} (${subject}): done in ${formatDuration((Date.now() - started) / 1000)}`);
      return result;
    } catch (error) {
      if (stopping && signal?.aborted) {
        // Back to the queue as it was: a worker stopping is not the job's failure.
        await job.moveToWait(token);
        out.info(`job ${job.id} (${subject}): stopped with the worker; back in the queue`);
        throw new WaitingError();
      }
      if (signal?.aborted) {
        // The lock was lost (see lockRenewalFailed below): the job is no longer this worker's to finish or fail.
        out.warn(`job ${job.id} (${subject}): stopped; another worker takes it over`);
        throw error;
      }
      out.warn(`job ${job.id} (${subject}): failed: ${(error as Error).message}`);
      throw error;
    } finally {
      reporter.close();
    }
  };

  const processCase = async (job: Job, reporter: JobReporter, signal?: AbortSignal): Promise<CaseJobResult> => {
    const data = checkCaseJob(job.data);
    await checkRunFolder(data.runDir, data.token);
    await checkPluginFiles(pluginFilesOf(data.config), allowed);
    const entry = await leasePipeline(data.config, reporter);
    try {
      const theCase = await caseOf(entry, data.runDir, data.caseId, data.settings);
      await ensureWritableFolder(theCase.caseDir, 'case folder');
      return await runCase(entry.pipeline, theCase, { signal });
    } finally {
      entry.reporter.target = out;
      entry.busy = false;
    }
  };

  const processScore = async (job: Job, reporter: JobReporter): Promise<ScoreJobResult> => {
    const data = checkScoreJob(job.data);
    await checkPluginFiles(
      Object.entries(data.plugins)
        .filter(([, ref]) => isPathReference(ref))
        .map(([plugin, file]) => ({ where: `--plugin ${plugin}`, file })),
      allowed,
    );
    const manifest = join(data.detector, MANIFEST_FILE);
    const sha = createHash('sha256')
      .update(await readFile(manifest))
      .digest('hex');
    if (sha !== data.manifestSha256) {
      throw new Error(`${manifest} on this worker is not the detector the coordinator read: the detector folder must be shared at the same path`);
    }
    const key = `${data.detector}\0${sha}\0${JSON.stringify(data.plugins)}`;
    let cached = detectors.get(key);
    if (!cached) {
      const plugins: Record<string, TransformalyPlugin> = {};
      for (const [pluginName, file] of Object.entries(data.plugins)) {
        const plugin = await loadPlugin(file, { baseDir: process.cwd() });
        if (plugin.name !== pluginName) throw new Error(`--plugin ${pluginName}=${file}: that plugin is named "${plugin.name}", not "${pluginName}"`);
        plugins[pluginName] = plugin;
      }
      const switching = new SwitchingReporter(out);
      cached = { opened: openDetector(data.detector, { plugins, progress: switching }), reporter: switching, busy: 0 };
      detectors.set(key, cached);
      cached.opened.catch(() => detectors.delete(key));
      for (const [other, entry] of detectors) {
        if (other !== key && entry.busy === 0) {
          detectors.delete(other);
          void entry.opened.then((o) => o.dispose(), () => undefined);
        }
      }
    }
    cached.busy++;
    cached.reporter.target = reporter;
    try {
      const { detector } = await cached.opened;
      // As `transformaly score` builds them: the image's path is its id.
      const items = data.paths.map((path) => ({ id: path, label: '', load: () => decodeImage(path, { maxPixels: data.maxPixels }) }));
      const scores = await detector.score(items, `scoring shard ${data.shard + 1}/${data.shards}`);
      for (const s of scores.skipped) reporter.warn(`skipped ${s.id}: ${s.reason}`);
      const csv = detectorScoresCsv(scores, detector.threshold!);
      return { rows: csv.slice(csv.indexOf('\n') + 1), skipped: scores.skipped };
    } finally {
      cached.busy--;
      if (cached.busy === 0) cached.reporter.target = out;
    }
  };

  /** An idle pipeline of this config, or a new one; pipelines of other configs beyond `concurrency` are released. */
  const leasePipeline = async (config: ResolvedConfig, reporter: ProgressReporter): Promise<PipelineEntry> => {
    const key = JSON.stringify(config);
    let entry = pipelines.find((p) => p.key === key && !p.busy);
    if (!entry) {
      const switching = new SwitchingReporter(reporter);
      const pipeline = await createPipeline(config as unknown as TransformalyConfig, {
        baseDir: process.cwd(),
        configFile: 'the job\'s config',
        progress: switching,
      });
      entry = { key, pipeline, reporter: switching, cases: new Map(), busy: false };
      pipelines.push(entry);
      const idle = pipelines.filter((p) => !p.busy && p !== entry);
      for (const old of idle.slice(0, Math.max(0, pipelines.length - concurrency))) {
        pipelines.splice(pipelines.indexOf(old), 1);
        await old.pipeline.dispose();
      }
    }
    entry.busy = true;
    entry.reporter.target = reporter;
    return entry;
  };

  const worker = new Worker(queueNameOf(options), processor, {
    connection,
    name,
    concurrency,
    autorun: false,
    lockDuration: options.lockDuration ?? 120_000,
    stalledInterval: options.stalledInterval ?? 60_000,
    maxStalledCount: options.maxStalledCount ?? 2,
    // After a Redis outage, the move of a finished job is retried this soon.
    runRetryDelay: 1000,
  });
  let lastError = '';
  worker.on('error', (error) => {
    // Connection errors are reported once by the connection; others once per distinct message.
    if (/ECONNREFUSED|ECONNRESET|Connection is closed|ETIMEDOUT|EPIPE/.test(error.message) || error.message === lastError) return;
    lastError = error.message;
    out.warn(`worker ${name}: ${error.message}`);
  });
  worker.on('lockRenewalFailed', (jobIds: string[]) => {
    // Another worker may already be running these jobs; stop ours at the next step rather than compute them twice.
    for (const id of jobIds) {
      out.warn(`worker ${name}: lost the lock of job ${id} (Redis unreachable too long, or the process was paused); stopping it here`);
      worker.cancelJob(id, 'the job lock was lost');
    }
  });
  const closed = worker.run().then(() => undefined);
  await worker.waitUntilReady();
  out.info(`worker ${name}: waiting for jobs on queue "${queueNameOf(options)}" at ${displayUrl(options.url)} (concurrency ${concurrency})`);

  return {
    name,
    closed,
    async close() {
      stopping = true;
      worker.cancelAllJobs('the worker is stopping');
      await worker.close();
      await closed;
      for (const entry of pipelines.splice(0)) await entry.pipeline.dispose();
      for (const entry of detectors.values()) await entry.opened.then((o) => o.dispose(), () => undefined);
      detectors.clear();
      await disconnect(connection);
    },
  };
}

/** The case of a job, as this worker sees the data: its settings must be the coordinator's. */
async function caseOf(entry: PipelineEntry, runDir: string, caseId: string, expected: { hash: string; data: RunCase['settings']['data'] }): Promise<RunCase> {
  let cases = entry.cases.get(runDir);
  let fresh = false;
  if (!cases) {
    cases = runCases(entry.pipeline, runDir);
    entry.cases.set(runDir, cases);
    cases.catch(() => entry.cases.delete(runDir));
    fresh = true;
  }
  const found = (await cases).find((c) => c.protocolCase.id === caseId);
  if (!fresh && found?.settings.hash !== expected.hash) {
    // The data may have changed since this worker listed it: list it again once before refusing.
    entry.cases.delete(runDir);
    return caseOf(entry, runDir, caseId, expected);
  }
  if (!found) {
    throw new Error(`the config's protocol gives no case "${caseId}" on this worker (it gives ${(await cases).map((c) => c.protocolCase.id).join(', ')}): the data set this worker reads is not the coordinator's`);
  }
  if (found.settings.hash !== expected.hash) {
    const mine = found.settings.data;
    const theirs = expected.data;
    const what =
      mine.train !== theirs.train
        ? `training images: coordinator ${theirs.train}, this worker ${mine.train}`
        : mine.test !== theirs.test
          ? `test images: coordinator ${theirs.test}, this worker ${mine.test}`
          : mine.trainIds !== theirs.trainIds || mine.testIds !== theirs.testIds
            ? 'the same number of images, but other ones (paths or labels)'
            : 'the settings differ (other versions of Transformaly or its plugins?)';
    throw new Error(`case "${caseId}" on this worker is not the coordinator's (${what}): the data must be shared at the same paths`);
  }
  return found;
}

/** Every plugin file the config would load: stages named by path, and extra plugins by path. */
function pluginFilesOf(config: ResolvedConfig): { where: string; file: string }[] {
  const refs: { where: string; ref: string }[] = [];
  for (const slot of STAGE_SLOTS) {
    const value = slot.path.split('.').reduce<unknown>((o, k) => (o && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), config);
    const use = value && typeof value === 'object' ? (value as { use?: unknown }).use : undefined;
    if (typeof use === 'string') refs.push({ where: `${slot.path}.use`, ref: use });
  }
  config.plugins.forEach((ref, i) => refs.push({ where: `plugins[${i}]`, ref }));
  return refs.filter((r) => isPathReference(r.ref)).map((r) => ({ where: r.where, file: r.ref }));
}

/** Refuses plugin files outside the allowed folders (after following links, so a link cannot lead out). */
async function checkPluginFiles(files: { where: string; file: string }[], allowed: string[]): Promise<void> {
  for (const { where, file } of files) {
    if (!isAbsolute(file)) throw new Error(`${where}: the plugin file ${file} is not an absolute path; the coordinator sends resolved configs`);
    let real: string;
    try {
      real = await realpath(file);
    } catch {
      throw new Error(`${where}: the plugin file ${file} does not exist on this worker`);
    }
    const inside = allowed.some((dir) => {
      const rel = relative(dir, real);
      return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
    });
    if (!inside) {
      throw new Error(
        `${where}: the job's config loads the plugin file ${file}, and this worker runs plugin files only from ${
          allowed.length ? allowed.join(', ') : 'the folders given with --allow-plugins (none given)'
        }; start the worker with --allow-plugins <folder> if you trust that code`,
      );
    }
  }
}

async function realFolder(dir: string): Promise<string> {
  try {
    return await realpath(resolve(dir));
  } catch {
    throw new Error(`--allow-plugins ${dir}: no such folder`);
  }
}
