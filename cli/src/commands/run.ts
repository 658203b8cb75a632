import { join } from 'node:path';
import { checkSafeName, createPipelineFromFile, formatRunTable, runDirOf, runIdOf, runProtocol, type ProgressReporter } from '@transformaly/core';
import { writeReport } from '@transformaly/report';

export async function runCommand(options: { config?: string; runId?: string; force?: boolean }, progress: ProgressReporter, signal: AbortSignal): Promise<void> {
  // A bad run id is refused before anything is loaded.
  if (options.runId !== undefined) checkSafeName(options.runId, '--run-id');
  const pipeline = await createPipelineFromFile({ configPath: options.config, progress });
  try {
    const runId = options.runId ?? runIdOf(pipeline.config);
    const runDir = runDirOf(pipeline.config.outputDir, runId);
    progress.info(`run ${runId}: writing ${runDir}`);
    const results = await runProtocol(pipeline, { runDir, signal, force: options.force });
    const report = await writeReport(runDir);
    process.stdout.write(
      `${formatRunTable(results)}\n\nresults: ${join(runDir, 'results.json')}\nscores:  ${join(runDir, 'scores.csv')}\nreport:  ${report}\n`,
    );
  } finally {
    await pipeline.dispose();
  }
}
