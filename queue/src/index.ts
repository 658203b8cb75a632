// @transformaly/queue: runs and scoring spread over worker processes and machines through a BullMQ queue on Redis.
// docs/Reference/Distributed.md describes the topology, what must be shared, and the failure behaviour.
export { DEFAULT_QUEUE_NAME, displayUrl, redisOptions, type QueueAddress } from './connection.js';
export { runOnQueue, type QueueRunOptions } from './run.js';
export { scoreOnQueue, type QueueScoreOptions, type QueueScores } from './score.js';
export { startWorker, type QueueWorker, type WorkerOptions } from './worker.js';
export type { CoordinatorOptions } from './coordinator.js';
export { CASE_JOB, SCORE_JOB, JOB_FORMAT, RUN_MARKER, type CaseJobData, type ScoreJobData, type ScoreJobResult } from './jobs.js';
export type { JobProgress } from './progress.js';
