import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exitOf, killAll, outputs, startCli, waitFor, type CliProcess } from './fixtures/cli-process.js';
import { writeMarkerPlugin } from './fixtures/marker-plugin.js';
import { comparableResults, runFolder, writeRunConfig } from './fixtures/queue-run.js';
import { startRedis, type RedisServer } from './fixtures/redis-server.js';

// `transformaly run --queue` with real worker processes and a real redis-server: the same files as a local run.
const work = mkdtempSync(join(tmpdir(), 'transformaly-queue-run-'));
let redis: RedisServer;
let localRun = '';

const worker = (name: string, dir: string, ...extra: string[]) => startCli(name, ['worker', '--queue', redis.url, '--name', name, ...extra], dir);
const ready = (...workers: CliProcess[]) => waitFor('the workers to wait for jobs', () => workers.every((w) => /waiting for jobs/.test(w.stderr)), 30_000, workers);

/** Stops workers as an operator does (SIGTERM), checking that they stop cleanly. */
async function stop(...workers: CliProcess[]): Promise<void> {
  for (const w of workers) w.child.kill('SIGTERM');
  for (const w of workers) {
    const { code } = await exitOf(w, 30_000);
    expect(code, outputs(w)).toBe(0);
    expect(w.stderr).toMatch(/stopped/);
  }
}

beforeAll(async () => {
  redis = await startRedis();
  const dir = writeRunConfig(join(work, 'local'));
  const local = startCli('local run', ['run'], dir);
  const { code } = await exitOf(local, 90_000);
  expect(code, outputs(local)).toBe(0);
  localRun = runFolder(dir);
});

afterAll(async () => {
  await killAll();
  await redis?.dispose();
  rmSync(work, { recursive: true, force: true });
});

describe('transformaly run --queue', () => {
  let queuedRun = '';

  it('two workers compute the cases, and the coordinator writes the results.json and scores.csv of a local run', async () => {
    const dir = writeRunConfig(join(work, 'queued'));
    const workers = [worker('w1', dir), worker('w2', dir)];
    await ready(...workers);
    const coordinator = startCli('coordinator', ['run', '--queue', redis.url], dir);
    const { code } = await exitOf(coordinator, 90_000, workers);
    expect(code, outputs(coordinator, ...workers)).toBe(0);
    queuedRun = runFolder(dir);
    expect(basename(queuedRun)).toBe(basename(localRun));
    expect(comparableResults(queuedRun)).toEqual(comparableResults(localRun));
    expect(readFileSync(join(queuedRun, 'scores.csv'), 'utf8')).toBe(readFileSync(join(localRun, 'scores.csv'), 'utf8'));
    expect(existsSync(join(queuedRun, 'report.html'))).toBe(true);
    expect(existsSync(join(queuedRun, 'cases', 'unimodal_Bag', 'detector', 'manifest.json'))).toBe(true);

    // Progress on the coordinator's stderr: which worker runs which case, cases done, an ETA.
    const err = coordinator.stderr;
    const ranOn = [...err.matchAll(/case (unimodal\/\w+): running on worker (w\d) \(attempt 1\/3\)/g)].map((m) => [m[1], m[2]]);
    expect(ranOn.map(([c]) => c).sort()).toEqual(['unimodal/Bag', 'unimodal/Trouser']);
    // Both workers took a case: the jobs were spread, not run one after the other by one worker.
    expect(new Set(ranOn.map(([, w]) => w))).toEqual(new Set(['w1', 'w2']));
    expect(err).toMatch(/case unimodal\/\w+: done on worker w\d in [\d.]+s; 1\/2 cases done, (1 running \(case unimodal\/\w+ on w\d.*\)|1 waiting), ETA [\d.]+s/);
    expect(err).toMatch(/done on worker w\d in [\d.]+s; 2\/2 cases done\n/);
    expect(coordinator.stdout).toMatch(/AUROC \(%\)/);
    await stop(...workers);
  });

  it('leaves each job in Redis with its worker, result, progress and log, for any BullMQ dashboard', async () => {
    const { token } = JSON.parse(readFileSync(join(queuedRun, 'queue-run.json'), 'utf8'));
    const queue = new Queue('transformaly', { connection: { host: '127.0.0.1', port: redis.port } });
    try {
      const id = `${basename(queuedRun)}.${token.slice(0, 8)}.unimodal_Bag`;
      const job = await queue.getJob(id);
      expect(job, `job ${id}`).toBeDefined();
      expect(await job!.getState()).toBe('completed');
      expect(['w1', 'w2']).toContain(job!.processedBy);
      const result = JSON.parse(readFileSync(join(queuedRun, 'cases', 'unimodal_Bag', 'result.json'), 'utf8'));
      expect(job!.returnvalue).toEqual(result);
      expect(job!.data.config.distiller.options.epochs).toBe(40);
      expect(job!.progress).toMatchObject({ worker: job!.processedBy });
      const { logs } = await queue.getJobLogs(id);
      expect(logs.some((line) => /^case unimodal\/Bag: AUROC pretrained/.test(line))).toBe(true);
      expect(logs.some((line) => /^distill epoch 40\/40/.test(line))).toBe(true);
    } finally {
      await queue.close();
    }
  });

  it('run again: every case is done, so nothing is enqueued and the results are written again', async () => {
    const dir = join(work, 'queued');
    const coordinator = startCli('coordinator again', ['run', '--queue', redis.url], dir);
    const { code } = await exitOf(coordinator, 60_000);
    expect(code, outputs(coordinator)).toBe(0);
    expect(coordinator.stderr).toMatch(/all 2 cases already done/);
    expect(comparableResults(queuedRun)).toEqual(comparableResults(localRun));
  });

  it('one worker with --concurrency 2 runs both cases at once, each with its own pipeline, to the same results', async () => {
    const dir = writeRunConfig(join(work, 'concurrent'));
    const w = worker('w-double', dir, '--queue-name', 'concurrent', '--concurrency', '2');
    await ready(w);
    const coordinator = startCli('coordinator', ['run', '--queue', redis.url, '--queue-name', 'concurrent'], dir);
    const { code } = await exitOf(coordinator, 90_000, [w]);
    expect(code, outputs(coordinator, w)).toBe(0);
    // Both started before either finished.
    const firstDone = coordinator.stderr.indexOf(': done on worker');
    for (const c of ['Trouser', 'Bag']) {
      const started = coordinator.stderr.indexOf(`case unimodal/${c}: running on worker w-double`);
      expect(started, coordinator.stderr).toBeGreaterThanOrEqual(0);
      expect(started).toBeLessThan(firstDone);
    }
    // The worker's lines carry the case they belong to.
    expect(w.stderr).toMatch(/^\[case unimodal\/Bag\] distill epoch 40\/40/m);
    expect(comparableResults(runFolder(dir))).toEqual(comparableResults(localRun));
    await stop(w);
  });

  it('a worker that cannot see the run folder fails the job with that reason', async () => {
    const dir = writeRunConfig(join(work, 'hidden'), { protocol: { mode: 'unimodal', classes: ['Bag'] } });
    const coordinator = startCli('coordinator', ['run', '--queue', redis.url, '--queue-name', 'hidden', '--attempts', '1'], dir);
    await waitFor('the coordinator to enqueue', () => /waiting for workers/.test(coordinator.stderr), 60_000, [coordinator]);
    // The worker's machine would not have this folder at this path: move it out of its sight.
    const runDir = runFolder(dir);
    renameSync(runDir, `${runDir}.elsewhere`);
    const w = worker('w-blind', dir, '--queue-name', 'hidden');
    const { code } = await exitOf(coordinator, 60_000, [w]);
    expect(code, outputs(coordinator, w)).toBe(1);
    const reason = `this worker cannot see the run folder ${runDir} (it has no queue-run.json): outputDir must be one folder shared by the coordinator and every worker`;
    expect(coordinator.stderr).toContain(`case unimodal/Bag: failed after 1 attempt: ${reason}`);
    expect(w.stderr).toContain(reason);
    await stop(w);
  });

  it('a worker runs plugin files named by a job only from its --allow-plugins folders', async () => {
    const pluginDir = join(work, 'plugins');
    const marker = join(work, 'marker.txt');
    const plugin = writeMarkerPlugin(pluginDir, marker);
    const imports = () => (existsSync(marker) ? readFileSync(marker, 'utf8').split('\n').filter(Boolean).length : 0);
    const dir = writeRunConfig(join(work, 'plugin-run'), {
      protocol: { mode: 'unimodal', classes: ['Bag'] },
      distiller: false,
      scorers: { pretrained: { use: plugin } },
    });
    const args = ['run', '--queue', redis.url, '--queue-name', 'plugins', '--attempts', '1'];
    const refused = startCli('coordinator', args, dir);
    await waitFor('the coordinator to enqueue', () => /waiting for workers/.test(refused.stderr), 60_000, [refused]);
    const importedByCoordinator = imports();
    expect(importedByCoordinator).toBeGreaterThan(0);
    const strict = worker('w-strict', dir, '--queue-name', 'plugins');
    expect((await exitOf(refused, 60_000, [strict])).code, outputs(refused, strict)).toBe(1);
    expect(refused.stderr).toContain(
      `failed after 1 attempt: scorers.pretrained.use: the job's config loads the plugin file ${plugin}, and this worker runs plugin files only from the folders given with --allow-plugins (none given)`,
    );
    // Refused before anything was imported.
    expect(imports()).toBe(importedByCoordinator);
    await stop(strict);

    const trusting = worker('w-trusting', dir, '--queue-name', 'plugins', '--allow-plugins', pluginDir);
    const accepted = startCli('coordinator again', args, dir);
    expect((await exitOf(accepted, 60_000, [trusting])).code, outputs(accepted, trusting)).toBe(0);
    expect(accepted.stderr).toMatch(/1 enqueued again/);
    expect(imports()).toBeGreaterThan(importedByCoordinator + 1);
    const results = JSON.parse(readFileSync(join(runFolder(dir), 'results.json'), 'utf8'));
    expect(results.cases.map((c: { caseId: string }) => c.caseId)).toEqual(['unimodal/Bag']);
    expect(results.failed).toEqual([]);
    await stop(trusting);
  });

  it('refuses a --queue that is not a Redis URL before loading anything, and queue flags without --queue', async () => {
    const dir = join(work, 'queued');
    const badScheme = startCli('bad scheme', ['run', '--queue', 'http://127.0.0.1:6379'], dir);
    expect((await exitOf(badScheme, 30_000)).code).toBe(1);
    expect(badScheme.stderr).toBe('transformaly: --queue http://127.0.0.1:6379: expected a redis:// or rediss:// URL, found the scheme http:\n');
    const notUrl = startCli('not a URL', ['worker', '--queue', '127.0.0.1:6379'], dir);
    expect((await exitOf(notUrl, 30_000)).code).toBe(1);
    expect(notUrl.stderr).toBe('transformaly: --queue "127.0.0.1:6379" is not a URL; expected redis://HOST:PORT (or rediss:// for TLS), e.g. redis://127.0.0.1:6379\n');
    const noQueue = startCli('no queue', ['run', '--attempts', '2'], dir);
    expect((await exitOf(noQueue, 30_000)).code).toBe(1);
    expect(noQueue.stderr).toBe('transformaly: --attempts applies to work spread over workers: give --queue redis://HOST:PORT too\n');
  });

  it('gives up with a clear error when no Redis answers at the URL', async () => {
    const dir = join(work, 'queued');
    // Port 1: nothing listens there.
    const down = startCli('no redis', ['run', '--queue', 'redis://127.0.0.1:1'], dir);
    const { code } = await exitOf(down, 60_000);
    expect(code, outputs(down)).toBe(1);
    expect(down.stderr).toMatch(/cannot reach Redis at redis:\/\/127\.0\.0\.1:1 within 15 s \(connect ECONNREFUSED 127\.0\.0\.1:1\); is redis-server running there/);
  });
});
