// The one home of scores.csv: written per case by `runProtocol`, merged into the run's file, read back by `eval` and
// by the report. A score is a JavaScript number as `String(number)` writes it; ±Infinity is accepted (a zero-density
// image ranks last, and ranking metrics and the report's charts are defined for it), NaN or any other text is not.
import { evaluateScores, summarizeCases, type CaseSummary } from '../metrics/index.js';
import type { DetectorScores } from './detector.js';

export const SCORES_CSV_HEADER = 'case,path,label,anomalous,pretrained,finetuned,combined,flagged';

/** The feature spaces a `scores.csv` may hold, in the column order of the file. */
export const SCORE_SPACES = ['pretrained', 'finetuned', 'combined'] as const;
export type ScoreSpace = (typeof SCORE_SPACES)[number];

/** The test scores of one protocol case, as read back from `scores.csv`. */
export interface CaseScores {
  caseId: string;
  anomalous: boolean[];
  /** Normality scores (higher = more normal) per space; a space without scores in the file is absent. */
  spaces: Partial<Record<ScoreSpace, Float64Array>>;
  /** Whether each image was flagged against the threshold calibrated at fit time. */
  flagged: boolean[];
}

/** Per-case metrics recomputed from a `scores.csv`. */
export interface ScoresEvaluation {
  cases: { caseId: string; metrics: Record<string, { auroc: number; averagePrecision: number }> }[];
  auroc: CaseSummary;
  averagePrecision: CaseSummary;
}

const COLUMN = Object.fromEntries(SCORES_CSV_HEADER.split(',').map((name, i) => [name, i])) as Record<string, number>;
// What String(number) writes, and nothing looser (Number() would also take '', ' 1', '0x1f').
const NUMBER = /^-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?$|^-?Infinity$/;

export function csvField(value: string): string {
  return /[",\n\r]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

/** Parses RFC 4180 CSV text into rows of fields. */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else quoted = false;
      } else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      row.push(field);
      field = '';
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else field += ch;
  }
  if (field !== '' || row.length > 0) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}

/** One case's rows of `scores.csv`, with the header. `anomalous` and `labels` are the ground truth per scored image. */
export function caseScoresCsv(caseId: string, scores: DetectorScores, anomalous: boolean[], labels: Map<string, string>): string {
  const lines = [SCORES_CSV_HEADER];
  for (let i = 0; i < scores.ids.length; i++) {
    lines.push(
      [
        csvField(caseId),
        csvField(scores.ids[i]),
        csvField(labels.get(scores.ids[i]) ?? ''),
        anomalous[i] ? 1 : 0,
        scores.pretrained[i],
        scores.finetuned ? scores.finetuned[i] : '',
        scores.combined[i],
        scores.anomalous[i] ? 1 : 0,
      ].join(','),
    );
  }
  return `${lines.join('\n')}\n`;
}

/** The cases' `scores.csv` texts as one file: one header, then every case's rows in the order given. */
export function mergeScoresCsv(parts: { text: string; file: string }[]): string {
  const out = [`${SCORES_CSV_HEADER}\n`];
  for (const { text, file } of parts) {
    const newline = text.indexOf('\n');
    const header = newline < 0 ? text : text.slice(0, newline).replace(/\r$/, '');
    if (header !== SCORES_CSV_HEADER) throw new Error(`${file}: expected the header "${SCORES_CSV_HEADER}", found "${header}"`);
    const body = newline < 0 ? '' : text.slice(newline + 1);
    out.push(body === '' || body.endsWith('\n') ? body : `${body}\n`);
  }
  return out.join('');
}

/** The header of the CSV `transformaly score` writes. */
export const DETECTOR_SCORES_CSV_HEADER = 'path,pretrained,finetuned,combined,threshold,anomalous';

/** The scores of images scored by `transformaly score`: one row per image, with the detector's threshold. */
export function detectorScoresCsv(scores: DetectorScores, threshold: number): string {
  const lines = [DETECTOR_SCORES_CSV_HEADER];
  for (let i = 0; i < scores.ids.length; i++) {
    lines.push([csvField(scores.ids[i]), scores.pretrained[i], scores.finetuned?.[i] ?? '', scores.combined[i], threshold, scores.anomalous[i] ? 1 : 0].join(','));
  }
  return `${lines.join('\n')}\n`;
}

/**
 * Reads a `scores.csv` written by `runProtocol` into per-case arrays, in the order the cases first appear. Errors
 * name the file, the line and the column.
 */
export function readScoresCsv(text: string, file = 'scores.csv'): Map<string, CaseScores> {
  const rows = parseCsv(text).filter((r) => r.length > 1 || r[0] !== '');
  const header = rows.shift();
  if (!header || header.join(',') !== SCORES_CSV_HEADER) {
    throw new Error(`${file}: expected the header "${SCORES_CSV_HEADER}", found "${header?.join(',') ?? ''}"`);
  }
  const raw = new Map<string, { anomalous: boolean[]; flagged: boolean[]; spaces: Record<ScoreSpace, (number | undefined)[]> }>();
  rows.forEach((r, i) => {
    const line = i + 2;
    if (r.length !== header.length) throw new Error(`${file}: line ${line} has ${r.length} fields, expected ${header.length}`);
    const caseId = r[COLUMN.case];
    let entry = raw.get(caseId);
    if (!entry) raw.set(caseId, (entry = { anomalous: [], flagged: [], spaces: { pretrained: [], finetuned: [], combined: [] } }));
    entry.anomalous.push(flag(r[COLUMN.anomalous], 'anomalous', file, line));
    entry.flagged.push(flag(r[COLUMN.flagged], 'flagged', file, line));
    for (const space of SCORE_SPACES) {
      const value = r[COLUMN[space]];
      if (value === '') {
        entry.spaces[space].push(undefined);
        continue;
      }
      if (!NUMBER.test(value)) throw new Error(`${file}: line ${line}: "${space}" must be a number, found "${value}"`);
      entry.spaces[space].push(Number(value));
    }
  });
  if (raw.size === 0) throw new Error(`${file}: no score rows`);
  const out = new Map<string, CaseScores>();
  for (const [caseId, entry] of raw) {
    const spaces: CaseScores['spaces'] = {};
    for (const space of SCORE_SPACES) {
      const values = entry.spaces[space];
      const present = values.filter((v) => v !== undefined).length;
      if (present === 0) continue;
      if (present !== values.length) throw new Error(`${file}: case "${caseId}" has "${space}" scores on only ${present} of its ${values.length} rows`);
      spaces[space] = Float64Array.from(values as number[]);
    }
    if (!spaces.combined) throw new Error(`${file}: case "${caseId}" has no "combined" scores`);
    out.set(caseId, { caseId, anomalous: entry.anomalous, flagged: entry.flagged, spaces });
  }
  return out;
}

/** Recomputes the per-case metrics and tables from a `scores.csv` written by `runProtocol`. */
export function evaluateScoresCsv(text: string, file = 'scores.csv'): ScoresEvaluation {
  const cases = [...readScoresCsv(text, file).values()].map(({ caseId, anomalous, spaces }) => {
    const metrics: ScoresEvaluation['cases'][number]['metrics'] = {};
    for (const [space, normality] of Object.entries(spaces)) {
      const e = evaluateScores({ normality, anomalous });
      metrics[space] = { auroc: e.auroc, averagePrecision: e.averagePrecision };
    }
    return { caseId, metrics };
  });
  const summary = (metric: 'auroc' | 'averagePrecision') =>
    summarizeCases(cases.map((c) => ({ caseId: c.caseId, metrics: Object.fromEntries(Object.entries(c.metrics).map(([s, m]) => [s, m[metric]])) })));
  return { cases, auroc: summary('auroc'), averagePrecision: summary('averagePrecision') };
}

function flag(value: string, column: string, file: string, line: number): boolean {
  if (value === '1') return true;
  if (value === '0') return false;
  throw new Error(`${file}: line ${line}: "${column}" must be 0 or 1, found "${value}"`);
}
