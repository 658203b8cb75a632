import { createServer } from '@transformaly/serve';
import { givenPlugins, pluginPair } from './score.js';

export interface ServeCommandOptions {
  detector: string;
  host: string;
  port: number;
  batchSize?: number;
  batchWait?: number;
  maxQueue?: number;
  timeout?: number;
  bodyLimit?: number;
  maxFiles?: number;
  maxPixels?: number;
  decodeConcurrency?: number;
  logLevel: string;
  plugin?: string[];
}

/**
 * Serves a saved detector over HTTP until SIGTERM or SIGINT, then stops accepting requests, answers those already
 * accepted and returns (exit status 0). A second signal exits at once. Logs are pino JSON lines on stdout.
 */
export async function serveCommand(options: ServeCommandOptions): Promise<void> {
  const app = createServer({
    detector: options.detector,
    plugins: await givenPlugins((options.plugin ?? []).map(pluginPair)),
    baseDir: process.cwd(),
    batchSize: options.batchSize,
    batchWaitMs: options.batchWait,
    maxQueue: options.maxQueue,
    timeoutMs: options.timeout,
    bodyLimit: options.bodyLimit,
    maxFiles: options.maxFiles,
    maxPixels: options.maxPixels,
    decodeConcurrency: options.decodeConcurrency,
    logger: { level: options.logLevel },
  });
  let closing: Promise<void> | undefined;
  let stopRequested!: () => void;
  const stopped = new Promise<void>((resolve) => (stopRequested = resolve));
  const stop = (signal: NodeJS.Signals) => {
    if (closing) {
      app.log.warn(`${signal} again: exiting without finishing the requests in flight`);
      process.exit(1);
    }
    app.log.info(`${signal}: no longer accepting requests; finishing those in flight`);
    closing = app.close();
    stopRequested();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  await app.listen({ host: options.host, port: options.port });
  try {
    await app.detectorReady;
  } catch (error) {
    await (closing ?? app.close());
    throw error;
  }
  await stopped;
  await closing;
  app.log.info('stopped');
}
