import { join } from 'node:path';
import { createPipelineFromFile, formatRunTable, runIdOf, runProtocol, type ProgressReporter } from '@transformaly/core';
import { writeReport } from '@transformaly/report';

export async function runCommand(options: { config?: string; runId?: string }, progress: ProgressReporter, signal: AbortSignal): Promise<void> {
  const pipeline = await createPipelineFromFile({ configPath: options.config, progress });
  try {
    const runId = options.runId ?? runIdOf(pipeline.config);
    const runDir = join(pipeline.config.outputDir, runId);
    progress.info(`run ${runId}: writing ${runDir}`);
    const results = await runProtocol(pipeline, { runDir, signal });
    const report = await writeReport(runDir);
    process.stdout.write(
      `${formatRunTable(results)}\n\nresults: ${join(runDir, 'results.json')}\nscores:  ${join(runDir, 'scores.csv')}\nreport:  ${report}\n`,
    );
  } finally {
    await pipeline.dispose();
  }
}
