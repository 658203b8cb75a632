import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { evaluateScoresCsv, formatTable, writeFileAtomic } from '@transformaly/core';
import { writeReport } from '@transformaly/report';

/**
 * Recomputes per-case AUROC and average precision from a scores.csv written by `run`, and its run's report.html
 * when results.json lies beside it.
 */
export async function evalCommand(file: string, options: { out?: string }): Promise<void> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new Error(`${file}: cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  const evaluation = evaluateScoresCsv(text, file);
  process.stdout.write(`AUROC (%)\n${formatTable(evaluation.auroc, { percent: true })}\n\naverage precision (%)\n${formatTable(evaluation.averagePrecision, { percent: true })}\n`);
  if (options.out) await writeFileAtomic(options.out, JSON.stringify(evaluation, null, 2));
  if (basename(file) === 'scores.csv' && existsSync(join(dirname(file), 'results.json'))) {
    process.stdout.write(`\nreport: ${await writeReport(dirname(file))}\n`);
  }
}
