import { Queue, type Job, type JobsOptions, type JobState } from 'bullmq';
import type { Redis } from 'ioredis';
import { formatDuration, type ProgressReporter } from '@transformaly/core';
import { checkPersistence, connect, disconnect, displayUrl, queueNameOf, waitUntilReady, type QueueAddress } from './connection.js';
import type { JobProgress } from './progress.js';

export interface CoordinatorOptions extends QueueAddress {
  /** Attempts per job before it is reported as failed (default 3). */
  attempts?: number;
  /** Delay before the first retry of a failed job, doubled at each further one (ms; default 30 000). */
  retryDelay?: number;
  /** How often the coordinator asks Redis about its jobs (ms; default 1000). */
  pollInterval?: number;
  /** How often a status line is printed while nothing finishes (ms; default 60 000). */
  statusInterval?: number;
  /** How long to wait for Redis at the start before giving up (ms; default 15 000). */
  connectTimeout?: number;
  signal?: AbortSignal;
}

/** One job the coordinator waits for, and what it has seen of it. */
export interface TrackedJob<Data> {
  id: string;
  /** What progress lines call it, e.g. `case unimodal/Bag`. */
  subject: string;
  data: Data;
  state?: string;
  worker?: string;
  attemptsMade: number;
  stalledCounter: number;
  step?: string;
}

export type JobOutcome<Result> = { ok: true; result: Result; seconds: number; worker?: string } | { ok: false; error: string; attempts: number };

/**
 * The coordinator's side of a queue: enqueues jobs under stable ids (a rerun finds the jobs of an earlier one, kept,
 * running or finished), then follows them until each has completed or failed for good, reporting on `progress`
 * which worker runs what, failures, take-overs from workers that died, and an ETA.
 */
export class Coordinator {
  readonly queue: Queue;
  private readonly client: Redis;
  private readonly attempts: number;

  private constructor(
    private readonly options: CoordinatorOptions,
    private readonly progress: ProgressReporter,
    client: Redis,
  ) {
    this.client = client;
    this.queue = new Queue(queueNameOf(options), { connection: client });
    // Connection errors are reported by the connection itself, once per outage.
    this.queue.on('error', () => undefined);
    this.attempts = options.attempts ?? 3;
  }

  static async open(options: CoordinatorOptions, progress: ProgressReporter): Promise<Coordinator> {
    const client = connect(options, progress, 'coordinator');
    try {
      await waitUntilReady(client, options.url, options.connectTimeout ?? 15_000);
      await checkPersistence(client, progress);
    } catch (error) {
      await disconnect(client);
      throw error;
    }
    return new Coordinator(options, progress, client);
  }

  get where(): string {
    return `queue "${queueNameOf(this.options)}" at ${displayUrl(this.options.url)}`;
  }

  /**
   * Makes sure a job with this id and data is queued: an existing job is kept when `keep` says so (given its data and
   * state), else replaced by a new one; a running job that is not to be kept is an error. Returns what was done.
   */
  async enqueue<Data>(name: string, id: string, data: Data, keep: (existing: Data, state: JobState) => boolean): Promise<'added' | 'kept' | 'replaced'> {
    const existing = (await this.queue.getJob(id)) as Job<Data> | undefined;
    if (!existing) {
      await this.add(name, id, data);
      return 'added';
    }
    const state = await existing.getState();
    if (state !== 'unknown' && keep(existing.data, state)) return 'kept';
    if (state === 'active') {
      throw new Error(
        `the job ${id} is running on worker ${existing.processedBy ?? '(unknown)'} with other settings (from an earlier coordinator); ` +
          'wait for it to end, or stop that worker, then rerun',
      );
    }
    await existing.remove();
    await this.add(name, id, data);
    return 'replaced';
  }

  private async add(name: string, jobId: string, data: unknown): Promise<void> {
    const options: JobsOptions = {
      jobId,
      attempts: this.attempts,
      backoff: { type: 'exponential', delay: this.options.retryDelay ?? 30_000 },
      // Kept for dashboards and for a rerun of the coordinator to find; then Redis forgets them.
      removeOnComplete: { age: 7 * 24 * 3600 },
      removeOnFail: { age: 30 * 24 * 3600 },
    };
    await this.queue.add(name, data, options);
  }

  /**
   * Follows the jobs until every one has an outcome; `onOutcome` is called once per job as it ends (and may turn a
   * completed job into a failure, e.g. when its files cannot be seen here). A job that vanished from Redis (a server
   * restarted without persistence) is enqueued again with `requeue`.
   */
  async follow<Data, Result>(
    jobs: TrackedJob<Data>[],
    handlers: {
      requeue(job: TrackedJob<Data>): Promise<void>;
      onOutcome(job: TrackedJob<Data>, outcome: JobOutcome<Result>): Promise<JobOutcome<Result>>;
      /** What the status line counts the jobs as (e.g. `cases`), and the number already done before this session. */
      noun: string;
      doneBefore: number;
    },
  ): Promise<Map<string, JobOutcome<Result>>> {
    const { progress } = this;
    const pollInterval = this.options.pollInterval ?? 1000;
    const statusInterval = this.options.statusInterval ?? 60_000;
    const outcomes = new Map<string, JobOutcome<Result>>();
    const durations: number[] = [];
    const total = jobs.length + handlers.doneBefore;
    let lastStatus = Date.now();
    let unreachable = false;

    const status = (): string => {
      const done = handlers.doneBefore + [...outcomes.values()].filter((o) => o.ok).length;
      const failed = [...outcomes.values()].filter((o) => !o.ok).length;
      const pending = jobs.filter((j) => !outcomes.has(j.id));
      const running = pending.filter((j) => j.state === 'active');
      const parts = [`${done}/${total} ${handlers.noun} done`];
      if (failed) parts.push(`${failed} failed`);
      if (running.length) {
        parts.push(`${running.length} running (${running.map((j) => `${j.subject} on ${j.worker ?? '?'}${j.step ? `: ${j.step}` : ''}`).join('; ')})`);
      }
      const waiting = pending.length - running.length;
      if (waiting) parts.push(`${waiting} waiting`);
      if (pending.length) parts.push(`ETA ${eta(pending.length, running.length)}`);
      return parts.join(', ');
    };
    const eta = (remaining: number, running: number): string => {
      if (durations.length === 0) return 'after the first one finishes';
      const mean = durations.reduce((a, b) => a + b, 0) / durations.length;
      return formatDuration((mean * remaining) / Math.max(1, running));
    };

    while (outcomes.size < jobs.length) {
      this.options.signal?.throwIfAborted();
      let changed = false;
      try {
        for (const tracked of jobs) {
          if (outcomes.has(tracked.id)) continue;
          // The state first: the job's fields read after it are at least as new (a job that failed has its reason).
          const state = await this.queue.getJobState(tracked.id);
          const job = (await this.queue.getJob(tracked.id)) as Job<Data, Result> | undefined;
          if (!job) {
            progress.warn(`${tracked.subject}: its job is no longer in Redis (the server restarted without persistence?); enqueued again`);
            await handlers.requeue(tracked);
            tracked.state = undefined;
            continue;
          }
          if (state === 'unknown') continue;
          const worker = job.processedBy;
          // attemptsMade also counts the attempt that completes or fails for good; those are reported below.
          const attempts = job.opts.attempts ?? 1;
          if (job.attemptsMade > tracked.attemptsMade && state !== 'failed' && state !== 'completed' && job.failedReason) {
            progress.warn(`${tracked.subject}: attempt ${job.attemptsMade}/${attempts} failed on ${worker ?? 'a worker'}: ${job.failedReason}; retrying`);
          }
          if (job.stalledCounter > tracked.stalledCounter && state !== 'failed') {
            progress.warn(`${tracked.subject}: worker ${tracked.worker ?? worker ?? '?'} stopped responding; the job went back to the queue for another worker`);
          }
          const unseenStart = tracked.state !== 'active' || worker !== tracked.worker;
          if (state === 'active' && unseenStart) {
            progress.info(`${tracked.subject}: running on worker ${worker ?? '?'} (attempt ${job.attemptsMade + 1}/${attempts})`);
          } else if ((state === 'completed' || state === 'failed') && worker && unseenStart) {
            // A job can start and finish between two polls (a case resumed near its end): its start is still told,
            // so that the log says which worker took it on.
            progress.info(`${tracked.subject}: running on worker ${worker} (attempt ${Math.max(1, job.attemptsMade)}/${attempts})`);
          }
          tracked.state = state;
          tracked.worker = worker ?? tracked.worker;
          tracked.attemptsMade = job.attemptsMade;
          tracked.stalledCounter = job.stalledCounter;
          tracked.step = state === 'active' ? (job.progress as Partial<JobProgress> | undefined)?.step : undefined;
          if (state === 'completed' || state === 'failed') {
            const seconds = ((job.finishedOn ?? Date.now()) - (job.processedOn ?? Date.now())) / 1000;
            const raw: JobOutcome<Result> =
              state === 'completed'
                ? { ok: true, result: job.returnvalue, seconds, worker }
                : { ok: false, error: job.failedReason || 'failed without a reason', attempts: job.attemptsMade };
            const outcome = await handlers.onOutcome(tracked, raw);
            outcomes.set(tracked.id, outcome);
            changed = true;
            if (outcome.ok) {
              if (outcome.seconds > 0) durations.push(outcome.seconds);
              progress.info(`${tracked.subject}: done on worker ${worker ?? '?'} in ${formatDuration(outcome.seconds)}; ${status()}`);
            } else {
              progress.warn(`${tracked.subject}: failed after ${outcome.attempts} attempt${outcome.attempts === 1 ? '' : 's'}: ${outcome.error}`);
            }
          }
        }
        if (unreachable) progress.info(`coordinator: following the jobs again`);
        unreachable = false;
      } catch (error) {
        if (!isConnectionError(error)) throw error;
        unreachable = true;
      }
      if (!changed && Date.now() - lastStatus >= statusInterval && outcomes.size < jobs.length) {
        progress.info(status());
        lastStatus = Date.now();
      } else if (changed) {
        lastStatus = Date.now();
      }
      if (outcomes.size < jobs.length) await sleep(pollInterval, this.options.signal);
    }
    return outcomes;
  }

  async close(): Promise<void> {
    await this.queue.close().catch(() => undefined);
    await disconnect(this.client);
  }
}

function isConnectionError(error: unknown): boolean {
  return /ECONNREFUSED|ECONNRESET|Connection is closed|ETIMEDOUT|EPIPE|LOADING/.test((error as Error)?.message ?? '');
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
