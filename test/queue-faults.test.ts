import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exitOf, killAll, outputs, startCli, waitFor, type CliProcess } from './fixtures/cli-process.js';
import { pattern, writeImage } from './fixtures/data/images.js';
import { comparableResults, runFolder, writeRunConfig } from './fixtures/queue-run.js';
import { startRedis, type RedisServer } from './fixtures/redis-server.js';

// What BullMQ's engine gives a distributed run, proved with real worker processes and a real redis-server: a killed
// worker's case is taken over and resumed from its checkpoint, a failing case is retried a bounded number of times
// and reported, and a Redis restart loses nothing.
const work = mkdtempSync(join(tmpdir(), 'transformaly-queue-faults-'));
let redis: RedisServer;
let localRun = '';

// Small lock and stalled-check intervals, so that a dead worker's job is taken over within seconds.
const fast = ['--lock-duration', '2', '--stalled-interval', '1'];
const worker = (name: string, dir: string, queueName: string, ...extra: string[]) =>
  startCli(name, ['worker', '--queue', redis.url, '--queue-name', queueName, '--name', name, ...extra], dir);
const coordinatorOf = (dir: string, queueName: string, ...extra: string[]) =>
  startCli('coordinator', ['run', '--queue', redis.url, '--queue-name', queueName, ...extra], dir);
const enqueued = (coordinator: CliProcess) => waitFor('the coordinator to enqueue', () => /waiting for workers/.test(coordinator.stderr), 60_000, [coordinator]);

/** The case folder names whose distiller checkpoint exists in the run folder. */
function checkpointed(runDir: string): string[] {
  const dir = join(runDir, 'checkpoints');
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((c) => existsSync(join(dir, c, 'distiller-checkpoint.safetensors')));
}

beforeAll(async () => {
  redis = await startRedis();
  const dir = writeRunConfig(join(work, 'local'));
  const local = startCli('uninterrupted local run', ['run'], dir);
  const { code } = await exitOf(local, 90_000);
  expect(code, outputs(local)).toBe(0);
  localRun = runFolder(dir);
});

afterAll(async () => {
  await killAll();
  await redis?.dispose();
  rmSync(work, { recursive: true, force: true });
});

describe('a distributed run under faults', () => {
  it('a worker killed in the middle of a case: another worker takes the job over and resumes from the checkpoint', async () => {
    const dir = writeRunConfig(join(work, 'killed'));
    const coordinator = coordinatorOf(dir, 'killed');
    await enqueued(coordinator);
    const runDir = runFolder(dir);
    const doomed = worker('w-doomed', dir, 'killed', ...fast);
    await waitFor('a distiller checkpoint of w-doomed', () => checkpointed(runDir).length > 0, 60_000, [coordinator, doomed]);
    // Frozen at once, then checked to be in the middle of its case, then killed as a crashed machine would be.
    doomed.child.kill('SIGSTOP');
    const [caseFolder] = checkpointed(runDir);
    const caseId = `unimodal/${caseFolder.replace('unimodal_', '')}`;
    expect(existsSync(join(runDir, 'cases', caseFolder, 'result.json'))).toBe(false);
    doomed.child.kill('SIGKILL');
    await doomed.exited;

    const rescuer = worker('w-rescuer', dir, 'killed', ...fast);
    const { code } = await exitOf(coordinator, 90_000, [rescuer]);
    expect(code, outputs(coordinator, rescuer)).toBe(0);
    // BullMQ's stalled-job check gave the job to the other worker, which resumed from the last epoch's checkpoint.
    const jobLog = rescuer.stderr.split(/(?=^job \S+ \(case )/m).find((part) => part.startsWith(`job `) && part.includes(`(case ${caseId}): started, attempt 1/3`));
    expect(jobLog, outputs(rescuer)).toBeDefined();
    const resumedAfter = Number(/resuming after epoch (\d+) from /.exec(jobLog!)?.[1]);
    expect(resumedAfter, jobLog).toBeGreaterThanOrEqual(1);
    expect(resumedAfter).toBeLessThan(40);
    // The other case ran from its start.
    expect(rescuer.stderr.match(/resuming after epoch/g)).toHaveLength(1);
    expect(coordinator.stderr).toContain(`case ${caseId}: running on worker w-doomed (attempt 1/3)`);
    expect(coordinator.stderr).toContain(`case ${caseId}: worker w-doomed stopped responding; the job went back to the queue for another worker`);
    expect(coordinator.stderr).toContain(`case ${caseId}: running on worker w-rescuer (attempt 1/3)`);
    // The same results as the uninterrupted run, to the last digit.
    expect(comparableResults(runDir)).toEqual(comparableResults(localRun));
    expect(readFileSync(join(runDir, 'scores.csv'), 'utf8')).toBe(readFileSync(join(localRun, 'scores.csv'), 'utf8'));
    rescuer.child.kill('SIGTERM');
    expect((await exitOf(rescuer, 30_000)).code).toBe(0);
  });

  it('a worker stopped (SIGTERM) in the middle of a case gives its job back without using an attempt', async () => {
    const dir = writeRunConfig(join(work, 'stopped'), { protocol: { mode: 'unimodal', classes: ['Trouser'] } });
    // One attempt only: had the stop counted as a failure, the case would be reported failed.
    const coordinator = coordinatorOf(dir, 'stopped', '--attempts', '1');
    await enqueued(coordinator);
    const runDir = runFolder(dir);
    const first = worker('w-first', dir, 'stopped');
    await waitFor('a distiller checkpoint of w-first', () => checkpointed(runDir).length > 0, 60_000, [coordinator, first]);
    first.child.kill('SIGTERM');
    expect((await exitOf(first, 30_000)).code, outputs(first)).toBe(0);
    expect(first.stderr).toMatch(/job \S+ \(case unimodal\/Trouser\): stopped with the worker; back in the queue\nworker w-first: stopped\n$/);
    expect(existsSync(join(runDir, 'cases', 'unimodal_Trouser', 'result.json'))).toBe(false);

    const second = worker('w-second', dir, 'stopped');
    const { code } = await exitOf(coordinator, 90_000, [second]);
    expect(code, outputs(coordinator, second)).toBe(0);
    expect(second.stderr).toMatch(/started, attempt 1\/1\n(.*\n)*.*resuming after epoch \d+ from /);
    const results = comparableResults(runDir);
    expect(results.cases).toEqual(comparableResults(localRun).cases.filter((c: { caseId: string }) => c.caseId === 'unimodal/Trouser'));
    second.child.kill('SIGTERM');
    expect((await exitOf(second, 30_000)).code).toBe(0);
  });

  it('a case with bad data is retried a bounded number of times, then reported in results.json; the others complete', async () => {
    const data = join(work, 'bad-data');
    for (const [c, cls] of ['a', 'b', 'c'].entries()) {
      for (let i = 0; i < 12; i++) await writeImage(join(data, 'train', cls, `${i}.png`), pattern(28, 28, 10 * c + i), 'png');
      for (let i = 0; i < 4; i++) await writeImage(join(data, 'test', cls, `${i}.png`), pattern(28, 28, 100 + 10 * c + i), 'png');
    }
    const broken = join(data, 'train', 'b', 'broken.png');
    writeFileSync(broken, 'this is not a PNG');
    const dir = writeRunConfig(join(work, 'failing'), {
      data: { use: 'folder', options: { root: data } },
      protocol: { mode: 'unimodal' },
      distiller: { use: 'transformaly', options: { blocks: { last: 1 }, epochs: 2 } },
      batchSize: 5,
    });
    const workers = [worker('w1', dir, 'failing'), worker('w2', dir, 'failing')];
    // A retry delay longer than the coordinator's poll, so that it sees the failed attempt before the retry.
    const coordinator = coordinatorOf(dir, 'failing', '--attempts', '2', '--retry-delay', '1.5');
    const { code } = await exitOf(coordinator, 90_000, workers);
    expect(code, outputs(coordinator, ...workers)).toBe(1);
    const results = JSON.parse(readFileSync(join(runFolder(dir), 'results.json'), 'utf8'));
    expect(results.cases.map((c: { caseId: string }) => c.caseId)).toEqual(['unimodal/a', 'unimodal/c']);
    expect(results.auroc.rows.map((r: { caseId: string }) => r.caseId)).toEqual(['unimodal/a', 'unimodal/c']);
    expect(results.failed).toHaveLength(1);
    expect(results.failed[0]).toMatchObject({ caseId: 'unimodal/b', attempts: 2 });
    expect(results.failed[0].error).toContain(broken);
    // Two attempts on the workers, no third.
    const attempts = workers.flatMap((w) => [...w.stderr.matchAll(/\(case unimodal\/b\): failed: /g)]);
    expect(attempts, outputs(...workers)).toHaveLength(2);
    expect(coordinator.stderr).toMatch(new RegExp(`case unimodal/b: attempt 1/2 failed on w[12]: .*broken\\.png.*; retrying`));
    expect(coordinator.stderr).toMatch(/case unimodal\/b: failed after 2 attempts: .*broken\.png/);
    expect(coordinator.stderr).toMatch(/transformaly: 1 case failed \(listed in results\.json\):\n {2}- unimodal\/b \(2 attempts\): .*broken\.png.*\nrerun the same command to retry them; the finished cases are kept\n$/);
    expect(coordinator.stdout).toMatch(/unimodal\/a .*\nunimodal\/c /);
    // The scores and the report hold the finished cases, and the report lists the failed one with its error.
    const csvCases = new Set(readFileSync(join(runFolder(dir), 'scores.csv'), 'utf8').trim().split('\n').slice(1).map((l) => l.split(',')[0]));
    expect(csvCases).toEqual(new Set(['unimodal/a', 'unimodal/c']));
    const report = readFileSync(join(runFolder(dir), 'report.html'), 'utf8');
    expect(report).toMatch(/<h2>Failed cases<\/h2>[\s\S]*unimodal\/b[\s\S]*broken\.png/);
    for (const w of workers) w.child.kill('SIGTERM');
    for (const w of workers) expect((await exitOf(w, 30_000)).code).toBe(0);
  });

  it('Redis restarting in the middle of a run: workers and coordinator reconnect, and nothing is lost', async () => {
    const dir = writeRunConfig(join(work, 'restart'));
    const workers = [worker('w1', dir, 'restart'), worker('w2', dir, 'restart')];
    const coordinator = coordinatorOf(dir, 'restart');
    await enqueued(coordinator);
    const runDir = runFolder(dir);
    await waitFor('a case in the middle of its distillation', () => checkpointed(runDir).length > 0, 60_000, [coordinator, ...workers]);
    await redis.stop();
    await new Promise((r) => setTimeout(r, 1500));
    await redis.start();
    const { code } = await exitOf(coordinator, 90_000, workers);
    expect(code, outputs(coordinator, ...workers)).toBe(0);
    expect(coordinator.stderr).toMatch(/coordinator: lost the connection to Redis at redis:\/\/127\.0\.0\.1:\d+.*; reconnecting/);
    expect(coordinator.stderr).toMatch(/coordinator: reconnected to Redis/);
    for (const w of workers) expect(w.stderr, outputs(w)).toMatch(/worker w\d: reconnected to Redis/);
    expect(comparableResults(runDir)).toEqual(comparableResults(localRun));
    expect(readFileSync(join(runDir, 'scores.csv'), 'utf8')).toBe(readFileSync(join(localRun, 'scores.csv'), 'utf8'));
    for (const w of workers) w.child.kill('SIGTERM');
    for (const w of workers) expect((await exitOf(w, 30_000)).code).toBe(0);
  });

  it('Redis losing its data in the middle of a run: the coordinator enqueues the cases again, and they resume', async () => {
    const dir = writeRunConfig(join(work, 'flushed'));
    const workers = [worker('w1', dir, 'flushed', ...fast), worker('w2', dir, 'flushed', ...fast)];
    const coordinator = coordinatorOf(dir, 'flushed');
    await enqueued(coordinator);
    const runDir = runFolder(dir);
    await waitFor('a case in the middle of its distillation', () => checkpointed(runDir).length > 0, 60_000, [coordinator, ...workers]);
    // As a server restarted without persistence would be: empty.
    const client = new Redis(redis.port, '127.0.0.1');
    await client.flushall();
    await client.quit();
    const { code } = await exitOf(coordinator, 90_000, workers);
    expect(code, outputs(coordinator, ...workers)).toBe(0);
    expect(coordinator.stderr).toMatch(/case unimodal\/\w+: its job is no longer in Redis \(the server restarted without persistence\?\); enqueued again/);
    // The worker whose job vanished stopped it rather than finish it unseen; the case resumed from its checkpoint.
    expect(workers.map((w) => w.stderr).join('\n')).toMatch(/lost the lock of job \S+ .*; stopping it here/);
    expect(workers.map((w) => w.stderr).join('\n')).toMatch(/resuming after epoch \d+ from /);
    expect(comparableResults(runDir)).toEqual(comparableResults(localRun));
    expect(readFileSync(join(runDir, 'scores.csv'), 'utf8')).toBe(readFileSync(join(localRun, 'scores.csv'), 'utf8'));
    for (const w of workers) w.child.kill('SIGTERM');
    for (const w of workers) expect((await exitOf(w, 30_000)).code).toBe(0);
  });
});
