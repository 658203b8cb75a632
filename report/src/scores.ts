import { parseCsv, SCORES_CSV_HEADER } from '@transformaly/core';

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

const COLUMN = Object.fromEntries(SCORES_CSV_HEADER.split(',').map((name, i) => [name, i])) as Record<string, number>;

/**
 * Reads a `scores.csv` written by `runProtocol` into per-case arrays, in the order the cases first appear.
 * Infinite scores are kept (they rank, and the histograms put them in their edge bins); NaN or text is an error.
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
      const number = Number(value);
      if (Number.isNaN(number) || value.trim() === '') {
        throw new Error(`${file}: line ${line}: "${space}" must be a number, found "${value}"`);
      }
      entry.spaces[space].push(number);
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

function flag(value: string, column: string, file: string, line: number): boolean {
  if (value === '1') return true;
  if (value === '0') return false;
  throw new Error(`${file}: line ${line}: "${column}" must be 0 or 1, found "${value}"`);
}
