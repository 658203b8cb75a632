/** One protocol case's metric per feature space (e.g. `{ pretrained: 0.91, finetuned: 0.88, combined: 0.93 }`). */
export interface CaseMetricsRow {
  caseId: string;
  metrics: Record<string, number>;
}

/** Per-case rows plus their mean, like the tables of the paper. */
export interface CaseSummary {
  /** Metric columns, in the order they first appear in the rows. */
  columns: string[];
  rows: CaseMetricsRow[];
  /** Column-wise mean over the cases. */
  mean: Record<string, number>;
}

export interface FormatTableOptions {
  /** Digits after the decimal point (default 4, or 1 with `percent`). */
  digits?: number;
  /** Print values times 100, as the paper does for AUROC. */
  percent?: boolean;
  /** Header of the case column (default `case`). */
  caseHeader?: string;
}

/** Builds the per-case table and its mean row; every case must report the same metric columns. */
export function summarizeCases(rows: CaseMetricsRow[]): CaseSummary {
  if (rows.length === 0) throw new Error('summarizeCases: no cases to summarize');
  const columns = Object.keys(rows[0].metrics);
  if (columns.length === 0) throw new Error(`summarizeCases: case "${rows[0].caseId}" has no metrics`);
  const seen = new Set<string>();
  const sums = new Float64Array(columns.length);
  for (const row of rows) {
    if (seen.has(row.caseId)) throw new Error(`summarizeCases: case "${row.caseId}" appears more than once`);
    seen.add(row.caseId);
    const keys = Object.keys(row.metrics);
    // A mean over different subsets of cases per column would be misleading, so the columns must agree.
    for (const key of keys) {
      if (!columns.includes(key)) {
        throw new Error(`summarizeCases: case "${row.caseId}" has metric "${key}", which case "${rows[0].caseId}" lacks`);
      }
    }
    columns.forEach((column, c) => {
      const value = row.metrics[column];
      if (value === undefined) throw new Error(`summarizeCases: case "${row.caseId}" lacks metric "${column}"`);
      if (typeof value !== 'number' || !Number.isFinite(value)) {
        throw new Error(`summarizeCases: case "${row.caseId}" metric "${column}" is ${String(value)}, expected a finite number`);
      }
      sums[c] += value;
    });
  }
  const mean: Record<string, number> = {};
  columns.forEach((column, c) => {
    mean[column] = sums[c] / rows.length;
  });
  return { columns, rows: rows.map((r) => ({ caseId: r.caseId, metrics: { ...r.metrics } })), mean };
}

/** Renders a summary as a fixed-width text table: one line per case, a rule, then the mean. */
export function formatTable(summary: CaseSummary, options: FormatTableOptions = {}): string {
  const scale = options.percent ? 100 : 1;
  const digits = options.digits ?? (options.percent ? 1 : 4);
  if (!Number.isInteger(digits) || digits < 0 || digits > 15) {
    throw new Error(`formatTable: digits must be an integer from 0 to 15, got ${digits}`);
  }
  const caseHeader = options.caseHeader ?? 'case';
  const format = (v: number) => (v * scale).toFixed(digits);
  const lines: string[][] = [
    [caseHeader, ...summary.columns],
    ...summary.rows.map((r) => [r.caseId, ...summary.columns.map((c) => format(r.metrics[c]))]),
    ['mean', ...summary.columns.map((c) => format(summary.mean[c]))],
  ];
  const widths = lines[0].map((_, k) => Math.max(...lines.map((cells) => cells[k].length)));
  const render = (cells: string[]) =>
    cells.map((cell, k) => (k === 0 ? cell.padEnd(widths[k]) : cell.padStart(widths[k]))).join('  ').trimEnd();
  const rule = '-'.repeat(widths.reduce((a, b) => a + b, 0) + 2 * (widths.length - 1));
  const body = lines.slice(1, -1).map(render);
  return [render(lines[0]), rule, ...body, rule, render(lines[lines.length - 1])].join('\n') + '\n';
}
