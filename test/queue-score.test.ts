import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exitOf, killAll, outputs, startCli, waitFor, type CliProcess } from './fixtures/cli-process.js';
import { pattern, writeImage } from './fixtures/data/images.js';
import { writeRunConfig } from './fixtures/queue-run.js';
import { startRedis, type RedisServer } from './fixtures/redis-server.js';

// `transformaly score --queue`: the image list cut into shards, scored by worker processes through a real Redis, and
// merged into the CSV a local `score` writes, byte for byte.
const work = mkdtempSync(join(tmpdir(), 'transformaly-queue-score-'));
const images = join(work, 'images');
const detector = join(work, 'detector');
let redis: RedisServer;
let workers: CliProcess[] = [];

beforeAll(async () => {
  redis = await startRedis();
  // 45 images in two folders (the CSV is in path order across them).
  for (let i = 0; i < 45; i++) await writeImage(join(images, i % 3 === 0 ? 'more' : '.', `img-${String(i).padStart(2, '0')}.png`), pattern(28, 28, i), 'png');
  const dir = writeRunConfig(join(work, 'fit'), {
    protocol: { mode: 'unimodal', classes: ['Bag'] },
    distiller: { use: 'transformaly', options: { blocks: { last: 1 }, epochs: 2 } },
  });
  const fit = startCli('fit', ['fit', '--out', detector], dir);
  expect((await exitOf(fit, 90_000)).code, outputs(fit)).toBe(0);
  workers = ['w1', 'w2'].map((name) => startCli(name, ['worker', '--queue', redis.url, '--name', name], work));
  await waitFor('the workers to wait for jobs', () => workers.every((w) => /waiting for jobs/.test(w.stderr)), 30_000, workers);
});

afterAll(async () => {
  await killAll();
  await redis?.dispose();
  rmSync(work, { recursive: true, force: true });
});

describe('transformaly score --queue', () => {
  it('scores shards of whole batches on the workers and writes the CSV of a local score', async () => {
    const local = startCli('local score', ['score', '--detector', detector, images, '--out', join(work, 'local.csv')], work);
    expect((await exitOf(local, 60_000)).code, outputs(local)).toBe(0);
    // 15 images per shard asked, rounded up to two batches of 10: shards of 20, 20 and 5 images.
    const queued = startCli('coordinator', ['score', '--queue', redis.url, '--detector', detector, images, '--shard-size', '15', '--out', join(work, 'queued.csv')], work);
    expect((await exitOf(queued, 60_000, workers)).code, outputs(queued, ...workers)).toBe(0);
    const expected = readFileSync(join(work, 'local.csv'), 'utf8');
    expect(expected.trim().split('\n')).toHaveLength(46);
    expect(readFileSync(join(work, 'queued.csv'), 'utf8')).toBe(expected);
    expect(queued.stderr).toMatch(/score: 45 images in 3 shards of up to 20 on queue "transformaly" at redis:\/\/127\.0\.0\.1:\d+; waiting for workers/);
    expect(queued.stderr).toMatch(/an UNTRAINED backbone \(random weights\)/);
    expect(queued.stderr).toMatch(/wrote 45 scores to /);
    // The workers scored the shards, each shard once.
    const started = workers.flatMap((w) => [...w.stderr.matchAll(/\(score shard (\d)\): started, attempt 1\/3/g)].map((m) => m[1]));
    expect(started.sort()).toEqual(['1', '2', '3']);
  });

  it('run again, the shards scored before are collected from Redis, not scored again', async () => {
    const before = workers.map((w) => w.stderr.length);
    const again = startCli('coordinator again', ['score', '--queue', redis.url, '--detector', detector, images, '--shard-size', '20'], work);
    expect((await exitOf(again, 60_000, workers)).code, outputs(again)).toBe(0);
    expect(again.stdout).toBe(readFileSync(join(work, 'local.csv'), 'utf8'));
    expect(workers.map((w) => w.stderr.slice(before[workers.indexOf(w)]))).toEqual(['', '']);
  });

  it('a shard that cannot be scored fails the command with its error, as a local score fails', async () => {
    const bad = join(work, 'bad');
    await writeImage(join(bad, 'a.png'), pattern(28, 28, 1), 'png');
    writeFileSync(join(bad, 'b.png'), 'not a PNG');
    const local = startCli('local score', ['score', '--detector', detector, bad], work);
    expect((await exitOf(local, 60_000)).code).toBe(1);
    const queued = startCli('coordinator', ['score', '--queue', redis.url, '--detector', detector, bad, '--attempts', '1'], work);
    expect((await exitOf(queued, 60_000, workers)).code, outputs(queued, ...workers)).toBe(1);
    const localError = local.stderr.trim().split('\n').pop()!.replace(/^transformaly: /, '');
    expect(localError).toContain(join(bad, 'b.png'));
    expect(queued.stderr).toContain(`transformaly: scoring failed on 1 of 1 shards:\n  - shard 1/1 (${join(bad, 'a.png')} ...): ${localError}\n`);
  });
});
