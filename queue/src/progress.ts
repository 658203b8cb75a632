import type { ProgressReporter, ProgressTask } from '@transformaly/core';

/** What a worker reports of a running job in Redis (`job.progress`), for the coordinator and any BullMQ dashboard. */
export interface JobProgress {
  worker: string;
  /** The step under way, e.g. `distill epoch 3/10  2/4`. */
  step: string;
}

/**
 * A job's progress: lines on the worker's console (prefixed with the job's subject) and in the job's log in Redis,
 * and the current step as the job's progress, sent at most every `intervalMs` (Redis is shared by every worker).
 */
export class JobReporter implements ProgressReporter {
  private lastSent = 0;
  private pending: string | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly console: ProgressReporter,
    private readonly prefix: string,
    private readonly job: { log(row: string): Promise<unknown>; updateProgress(progress: object): Promise<void> },
    private readonly worker: string,
    private readonly intervalMs = 2000,
  ) {}

  info(message: string): void {
    this.console.info(`${this.prefix}${message}`);
    this.log(message);
  }

  warn(message: string): void {
    this.console.warn(`${this.prefix}${message}`);
    this.log(`warning: ${message}`);
  }

  task(label: string, total?: number): ProgressTask {
    const task = this.console.task(`${this.prefix}${label}`, total);
    let done = 0;
    const step = (detail?: string) => `${label}${total ? `  ${done}/${total}` : ''}${detail ? `  ${detail}` : ''}`;
    this.step(step());
    return {
      tick: (n = 1, detail?: string) => {
        done += n;
        task.tick(n, detail);
        this.step(step(detail));
      },
      done: (detail?: string) => {
        task.done(detail);
        this.log(step(detail));
      },
    };
  }

  /** Stops sending: the job is over. */
  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.pending = undefined;
  }

  private log(row: string): void {
    // A log line lost while Redis restarts costs nothing that matters; the job must not fail for it.
    this.job.log(row).catch(() => undefined);
  }

  private step(step: string): void {
    this.pending = step;
    const wait = this.lastSent + this.intervalMs - Date.now();
    if (wait <= 0) this.send();
    else this.timer ??= setTimeout(() => this.send(), wait);
  }

  private send(): void {
    this.timer = undefined;
    if (this.pending === undefined) return;
    const progress: JobProgress = { worker: this.worker, step: this.pending };
    this.pending = undefined;
    this.lastSent = Date.now();
    this.job.updateProgress(progress).catch(() => undefined);
  }
}

/** A reporter whose target changes: a pipeline kept across jobs reports each job's progress to that job. */
export class SwitchingReporter implements ProgressReporter {
  constructor(public target: ProgressReporter) {}
  info(message: string): void {
    this.target.info(message);
  }
  warn(message: string): void {
    this.target.warn(message);
  }
  task(label: string, total?: number): ProgressTask {
    return this.target.task(label, total);
  }
}
