import type { ProgressReporter } from '@transformaly/core';

export interface WorkerCommandOptions {
  queue: string;
  queueName?: string;
  concurrency?: number;
  name?: string;
  allowPlugins?: string[];
  /** Seconds. */
  lockDuration?: number;
  /** Seconds. */
  stalledInterval?: number;
}

/**
 * Takes jobs of `run --queue` and `score --queue` until stopped. Ctrl-C or SIGTERM stops it gracefully: its running
 * jobs stop at their next step and go back to the queue (a case resumes from its checkpoint wherever it runs next).
 */
export async function workerCommand(options: WorkerCommandOptions, progress: ProgressReporter, signal: AbortSignal): Promise<void> {
  const { startWorker } = await import('@transformaly/queue');
  const seconds = (s: number | undefined) => (s === undefined ? undefined : Math.round(s * 1000));
  const worker = await startWorker({
    url: options.queue,
    queueName: options.queueName,
    workerName: options.name,
    concurrency: options.concurrency,
    allowPlugins: options.allowPlugins,
    lockDuration: seconds(options.lockDuration),
    stalledInterval: seconds(options.stalledInterval),
    progress,
  });
  const stop = () => void worker.close();
  signal.addEventListener('abort', stop, { once: true });
  process.once('SIGTERM', stop);
  await worker.closed;
  progress.info(`worker ${worker.name}: stopped`);
}
