import { join } from 'node:path';
import { checkSafeName, createPipelineFromFile, formatRunTable, runDirOf, runIdOf, runProtocol, type ProgressReporter } from '@transformaly/core';
import { writeReport } from '@transformaly/report';
import { queueOptions, type QueueFlags } from '../queue.js';

export interface RunCommandOptions extends QueueFlags {
  config?: string;
  runId?: string;
  force?: boolean;
}

export async function runCommand(options: RunCommandOptions, progress: ProgressReporter, signal: AbortSignal): Promise<void> {
  // A bad run id is refused before anything is loaded.
  if (options.runId !== undefined) checkSafeName(options.runId, '--run-id');
  const queue = await queueOptions(options, signal);
  const pipeline = await createPipelineFromFile({ configPath: options.config, progress });
  try {
    const runId = options.runId ?? runIdOf(pipeline.config);
    const runDir = runDirOf(pipeline.config.outputDir, runId);
    progress.info(`run ${runId}: writing ${runDir}`);
    const results = queue
      ? await (await import('@transformaly/queue')).runOnQueue(pipeline, { ...queue, runDir, runId, force: options.force })
      : await runProtocol(pipeline, { runDir, signal, force: options.force });
    const report = await writeReport(runDir);
    process.stdout.write(
      `${formatRunTable(results)}\n\nresults: ${join(runDir, 'results.json')}\nscores:  ${join(runDir, 'scores.csv')}\nreport:  ${report}\n`,
    );
    const failed = results.failed ?? [];
    if (failed.length > 0) {
      throw new Error(
        `${failed.length} case${failed.length === 1 ? '' : 's'} failed (listed in results.json):\n` +
          failed.map((f) => `  - ${f.caseId} (${f.attempts} attempt${f.attempts === 1 ? '' : 's'}): ${f.error}`).join('\n') +
          '\nrerun the same command to retry them; the finished cases are kept',
      );
    }
  } finally {
    await pipeline.dispose();
  }
}
