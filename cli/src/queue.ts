import type { CoordinatorOptions } from '@transformaly/queue';

/** The options `run` and `score` share for spreading their work over queue workers. */
export interface QueueFlags {
  queue?: string;
  queueName?: string;
  attempts?: number;
  /** Seconds. */
  retryDelay?: number;
}

/**
 * The coordinator's options from the flags, the URL checked; undefined when no `--queue` was given (the work runs
 * here). Checked before anything is loaded, so a typo is reported at once.
 */
export async function queueOptions(flags: QueueFlags, signal: AbortSignal): Promise<CoordinatorOptions | undefined> {
  if (flags.queue === undefined) {
    for (const [flag, value] of [['--queue-name', flags.queueName], ['--attempts', flags.attempts], ['--retry-delay', flags.retryDelay]] as const) {
      if (value !== undefined) throw new Error(`${flag} applies to work spread over workers: give --queue redis://HOST:PORT too`);
    }
    return undefined;
  }
  (await import('@transformaly/queue')).redisOptions(flags.queue, '--queue');
  return {
    url: flags.queue,
    queueName: flags.queueName,
    attempts: flags.attempts,
    retryDelay: flags.retryDelay === undefined ? undefined : Math.round(flags.retryDelay * 1000),
    signal,
  };
}
