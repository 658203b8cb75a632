import { Redis, type RedisOptions } from 'ioredis';
import type { ProgressReporter } from '@transformaly/core';

/** Where the queue lives: a Redis server, and the queue's name in it. */
export interface QueueAddress {
  /** `redis://[user:password@]host[:port][/db]`, or `rediss://` for TLS. */
  url: string;
  /** The BullMQ queue's name (default `transformaly`); coordinators and workers of one run must agree on it. */
  queueName?: string;
}

export const DEFAULT_QUEUE_NAME = 'transformaly';

/** The queue's name, checked: BullMQ refuses `:` (its key separator). */
export function queueNameOf(address: QueueAddress): string {
  const name = address.queueName ?? DEFAULT_QUEUE_NAME;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) {
    throw new Error(`--queue-name ${JSON.stringify(name)} is not usable: use letters, digits, '.', '_' or '-'`);
  }
  return name;
}

/** The ioredis options of a `redis://` or `rediss://` URL; errors name `what` (e.g. `--queue`). */
export function redisOptions(url: string, what = '--queue'): RedisOptions {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`${what} ${JSON.stringify(url)} is not a URL; expected redis://HOST:PORT (or rediss:// for TLS), e.g. redis://127.0.0.1:6379`);
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new Error(`${what} ${displayUrl(url)}: expected a redis:// or rediss:// URL, found the scheme ${parsed.protocol}`);
  }
  if (!parsed.hostname) throw new Error(`${what} ${displayUrl(url)} names no host; expected redis://HOST:PORT`);
  const db = parsed.pathname.replace(/^\//, '');
  if (db !== '' && !/^\d+$/.test(db)) throw new Error(`${what} ${displayUrl(url)}: the path must be a database number (e.g. /0), found /${db}`);
  if (parsed.search || parsed.hash) throw new Error(`${what} ${displayUrl(url)}: no query or fragment is understood; expected redis://HOST:PORT[/DB]`);
  return {
    host: parsed.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: parsed.port ? Number(parsed.port) : 6379,
    username: parsed.username ? decodeURIComponent(parsed.username) : undefined,
    password: parsed.password ? decodeURIComponent(parsed.password) : undefined,
    db: db === '' ? 0 : Number(db),
    tls: parsed.protocol === 'rediss:' ? {} : undefined,
    // Through a Redis restart commands wait for the reconnection instead of failing (BullMQ's workers require it).
    maxRetriesPerRequest: null,
    // ioredis reconnects forever; a restarted server is found within 2 s of coming back.
    retryStrategy: (times) => Math.min(times * 100, 2000),
  };
}

/** The URL without its password, for messages and logs. */
export function displayUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString().replace(/\/$/, '');
  } catch {
    return url;
  }
}

/**
 * A connection to the queue's Redis that reports losing and regaining the server on `progress`, once per outage
 * (ioredis retries every 2 s at most; a line per retry would flood the log).
 */
export function connect(address: QueueAddress, progress: ProgressReporter, who: string): Redis {
  const shown = displayUrl(address.url);
  const client = new Redis(redisOptions(address.url));
  let lost = false;
  let ready = false;
  client.on('error', (error: Error) => {
    if (lost || closing.has(client)) return;
    lost = true;
    progress.warn(
      ready ? `${who}: lost the connection to Redis at ${shown} (${error.message}); reconnecting` : `${who}: cannot reach Redis at ${shown} (${error.message}); retrying`,
    );
  });
  client.on('close', () => {
    if (ready && !lost && !closing.has(client)) {
      lost = true;
      progress.warn(`${who}: lost the connection to Redis at ${shown}; reconnecting`);
    }
  });
  client.on('ready', () => {
    if (lost) progress.info(`${who}: reconnected to Redis at ${shown}`);
    lost = false;
    ready = true;
  });
  return client;
}

const closing = new WeakSet<Redis>();

/** Closes a connection made by `connect`, quietly: leaving is not losing the server. */
export async function disconnect(client: Redis): Promise<void> {
  closing.add(client);
  if (client.status === 'ready') await client.quit().catch(() => client.disconnect());
  else client.disconnect();
}

/** Waits for the first connection; a server still unreachable after `timeoutMs` is an error naming the URL. */
export async function waitUntilReady(client: Redis, url: string, timeoutMs: number): Promise<void> {
  if (client.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    let lastError = '';
    const onError = (error: Error) => void (lastError = error.message);
    const timer = setTimeout(() => {
      client.off('ready', onReady);
      client.off('error', onError);
      reject(new Error(`cannot reach Redis at ${displayUrl(url)} within ${timeoutMs / 1000} s${lastError ? ` (${lastError})` : ''}; is redis-server running there, and reachable from this machine?`));
    }, timeoutMs);
    const onReady = () => {
      clearTimeout(timer);
      client.off('error', onError);
      resolve();
    };
    client.once('ready', onReady);
    client.on('error', onError);
  });
}

/**
 * Warns when the Redis server keeps no data across a restart: the queue's jobs would be gone, and only the finished
 * cases (their folders) would survive. A server that refuses CONFIG (managed services often do) is not checked.
 */
export async function checkPersistence(client: Redis, progress: ProgressReporter): Promise<void> {
  let settings: string[];
  try {
    settings = [...((await client.config('GET', 'appendonly')) as string[]), ...((await client.config('GET', 'save')) as string[])];
  } catch {
    return;
  }
  const value = (key: string) => settings[settings.indexOf(key) + 1];
  if (value('appendonly') !== 'yes' && !value('save')) {
    progress.warn(
      'the Redis server persists nothing (appendonly no, no save points): if it restarts, queued jobs are lost; ' +
        'the coordinator enqueues them again, but run Redis with --appendonly yes (docs/Reference/Distributed.md)',
    );
  }
}
