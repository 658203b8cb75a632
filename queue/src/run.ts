import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  assembleRunResults,
  isCaseDone,
  prepareRun,
  type CaseResult,
  type FailedCase,
  type Pipeline,
  type RunCase,
  type RunResults,
} from '@transformaly/core';
import { Coordinator, type CoordinatorOptions, type JobOutcome, type TrackedJob } from './coordinator.js';
import { CASE_JOB, caseJobId, JOB_FORMAT, runToken, type CaseJobData } from './jobs.js';

export interface QueueRunOptions extends CoordinatorOptions {
  /** The run folder, shared with every worker at the same path. */
  runDir: string;
  /** Its name, e.g. `runIdOf(config)` or the `--run-id`; part of the job ids. */
  runId: string;
  /** Recompute the cases computed with other settings, instead of refusing (as `runProtocol`'s). */
  force?: boolean;
}

/**
 * `runProtocol` spread over workers: prepares the run folder as a local run does, enqueues one job per unfinished case
 * (carrying the resolved config, so workers need no config file), follows them, and writes `results.json` and
 * `scores.csv` from the finished cases with `assembleRunResults`, as a local run does. A case whose job failed for good
 * is listed in `results.json`'s `failed` with its error; the others complete. Jobs keep running on the workers if the
 * coordinator stops; rerunning it finds them.
 */
export async function runOnQueue(pipeline: Pipeline, options: QueueRunOptions): Promise<RunResults> {
  const { progress, config } = pipeline;
  const { runDir, runId } = options;
  // Redis first: an unreachable server is reported before the data set and the backbone are loaded.
  const coordinator = await Coordinator.open(options, progress);
  const failed: FailedCase[] = [];
  let cases: RunCase[];
  try {
    cases = await prepareRun(pipeline, { runDir, force: options.force });
    const token = await runToken(runDir, runId);
    const pending = cases.filter((c) => !isCaseDone(c));
    const done = cases.length - pending.length;
    if (pending.length === 0) progress.info(`run ${runId}: all ${cases.length} case${cases.length === 1 ? '' : 's'} already done`);
    const jobs: (TrackedJob<CaseJobData> & { runCase: RunCase })[] = [];
    const counts = { added: 0, kept: 0, replaced: 0 };
    for (const c of pending) {
      const id = caseJobId(runId, token, c.protocolCase.id);
      const data: CaseJobData = {
        format: JOB_FORMAT,
        runId,
        runDir,
        token,
        caseId: c.protocolCase.id,
        settings: { hash: c.settings.hash, data: c.settings.data },
        config,
      };
      // A job that completed although the case is not done (its folder was removed) computes it again.
      counts[await coordinator.enqueue(CASE_JOB, id, data, (existing, state) => sameCase(existing, data) && state !== 'failed' && state !== 'completed')]++;
      jobs.push({ id, subject: `case ${c.protocolCase.id}`, data, attemptsMade: 0, stalledCounter: 0, runCase: c });
    }
    if (jobs.length > 0) {
      const what = [`${counts.added} enqueued`, counts.kept && `${counts.kept} already queued`, counts.replaced && `${counts.replaced} enqueued again`, done && `${done} already done`];
      progress.info(
        `run ${runId}: ${jobs.length} case${jobs.length === 1 ? '' : 's'} on ${coordinator.where} (${what.filter(Boolean).join(', ')}); ` +
          'waiting for workers (transformaly worker --queue ...)',
      );
      const outcomes = await coordinator.follow<CaseJobData, CaseResult>(jobs, {
        noun: 'cases',
        doneBefore: done,
        requeue: async (job) => void (await coordinator.enqueue(CASE_JOB, job.id, job.data, () => false)),
        onOutcome: async (job, outcome) => checkVisible(jobs.find((j) => j.id === job.id)!.runCase, outcome),
      });
      for (const job of jobs) {
        const outcome = outcomes.get(job.id)!;
        if (!outcome.ok) failed.push({ caseId: job.data.caseId, error: outcome.error, attempts: outcome.attempts });
      }
    }
  } finally {
    await coordinator.close();
  }
  return assembleRunResults(pipeline, runDir, cases, failed);
}

/** The same case job: the same settings and config (the run folder and token are in its id). */
function sameCase(a: CaseJobData, b: CaseJobData): boolean {
  return a?.format === b.format && a.settings?.hash === b.settings.hash && JSON.stringify(a.config) === JSON.stringify(b.config);
}

/** A case a worker finished must be in the run folder as this machine sees it; otherwise outputDir is not shared. */
async function checkVisible(c: RunCase, outcome: JobOutcome<CaseResult>): Promise<JobOutcome<CaseResult>> {
  if (outcome.ok && !isCaseDone(c)) {
    return {
      ok: false,
      attempts: 1,
      error: `worker ${outcome.worker ?? '?'} finished the case, but its result is not in ${c.caseDir} as the coordinator sees it: outputDir must be one folder shared by the coordinator and every worker`,
    };
  }
  // A job that failed after writing its result (e.g. Redis went away as it finished) is done all the same.
  if (!outcome.ok && isCaseDone(c)) return { ok: true, result: JSON.parse(await readFile(join(c.caseDir, 'result.json'), 'utf8')) as CaseResult, seconds: 0 };
  return outcome;
}
