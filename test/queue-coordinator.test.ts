import { Worker } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProgressReporter, ProgressTask } from '@transformaly/core';
import { Coordinator, type TrackedJob } from '../queue/src/coordinator.js';
import { startRedis, type RedisServer } from './fixtures/redis-server.js';

// The coordinator learns of its jobs by asking Redis every pollInterval; a job can start and finish in between (a case
// resumed near its end on another worker did, in CI). Its log must still say which worker took the job on.
let redis: RedisServer;

beforeAll(async () => {
  redis = await startRedis();
});

afterAll(async () => {
  await redis?.dispose();
});

class RecordedProgress implements ProgressReporter {
  readonly lines: string[] = [];
  task(): ProgressTask {
    return { tick: () => undefined, done: () => undefined };
  }
  info(message: string): void {
    this.lines.push(message);
  }
  warn(message: string): void {
    this.lines.push(`warning: ${message}`);
  }
}

describe('the coordinator following its jobs', () => {
  it('tells which worker ran a job that started and finished between two of its polls', async () => {
    const progress = new RecordedProgress();
    const coordinator = await Coordinator.open({ url: redis.url, queueName: 'between-polls', pollInterval: 3000 }, progress);
    const { port } = new URL(redis.url);
    const worker = new Worker('between-polls', async () => ({ value: 42 }), {
      connection: { host: '127.0.0.1', port: Number(port) },
      name: 'w-quick',
      autorun: false,
    });
    try {
      const jobs: TrackedJob<{ n: number }>[] = [{ id: 'job-a', subject: 'job a', data: { n: 1 }, attemptsMade: 0, stalledCounter: 0 }];
      expect(await coordinator.enqueue('quick', 'job-a', { n: 1 }, () => false)).toBe('added');
      // The first poll sees the job waiting; the worker takes and finishes it well before the next one, 3 s later.
      const followed = coordinator.follow<{ n: number }, { value: number }>(jobs, {
        noun: 'jobs',
        doneBefore: 0,
        requeue: async () => undefined,
        onOutcome: async (_job, outcome) => outcome,
      });
      await new Promise((resolve) => setTimeout(resolve, 500));
      void worker.run();
      const outcomes = await followed;
      expect(outcomes.get('job-a')).toMatchObject({ ok: true, result: { value: 42 }, worker: 'w-quick' });
      expect(progress.lines[0]).toBe('job a: running on worker w-quick (attempt 1/3)');
      expect(progress.lines[1]).toMatch(/^job a: done on worker w-quick in [\d.]+s; 1\/1 jobs done$/);
      expect(progress.lines).toHaveLength(2);
    } finally {
      await worker.close();
      await coordinator.close();
    }
  });
});
