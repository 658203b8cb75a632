// Public surface of core/src/metrics (re-exported from core/src/index.ts).
export { auroc, averagePrecision, rocCurve, evaluateScores, type RocCurve, type ScoreEvaluation } from './ranking.js';
export { summarizeCases, formatTable, type CaseMetricsRow, type CaseSummary, type FormatTableOptions } from './table.js';
