import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { evaluateScores, formatTable, summarizeCases, type CaseSummary } from '../metrics/index.js';
import type { JsonObject, ProtocolCase, ResolvedConfig } from '../types.js';
import type { DetectorScores } from './detector.js';
import type { Pipeline } from './compose.js';
import { packageVersions } from './versions.js';

export interface CaseResult {
  caseId: string;
  mode: ProtocolCase['mode'];
  className: string;
  trainImages: number;
  heldOutImages: number;
  testImages: number;
  anomalousTestImages: number;
  threshold: number;
  /** Per feature space (`pretrained`, `finetuned`, `combined`): AUROC and average precision. */
  metrics: Record<string, { auroc: number; averagePrecision: number }>;
  seconds: { fit: number; score: number };
  skipped: { id: string; reason: string }[];
}

export interface RunResults {
  runId: string;
  untrainedBackbone: boolean;
  backbone: { id: string; sha256: string };
  cases: CaseResult[];
  /** AUROC per case and space, with the mean row, as in the paper's tables. */
  auroc: CaseSummary;
  averagePrecision: CaseSummary;
  config: ResolvedConfig;
  packages: Record<string, string>;
}

/** A run id derived from the resolved config, so that the same config finds its earlier run. */
export function runIdOf(config: ResolvedConfig): string {
  const { outputDir: _ignored, ...rest } = config;
  return createHash('sha256').update(stableStringify(rest)).digest('hex').slice(0, 12);
}

const caseFileName = (caseId: string) => caseId.replace(/[^A-Za-z0-9._-]+/g, '_');

/**
 * Fits and scores every protocol case of the config, writing `results.json`, `scores.csv` and the fitted detector
 * of each case under `runDir`. A case whose results are already there is kept, so an interrupted run resumes.
 */
export async function runProtocol(pipeline: Pipeline, options: { runDir: string; signal?: AbortSignal }): Promise<RunResults> {
  const { runDir, signal } = options;
  const progress = pipeline.progress;
  const backbone = await pipeline.backbone();
  if (backbone.info.untrained) {
    progress.warn(`the backbone ${backbone.info.id} has random weights: every result of this run is from an UNTRAINED model`);
  }
  const cases = await pipeline.cases();
  const results: CaseResult[] = [];
  for (const [index, protocolCase] of cases.entries()) {
    signal?.throwIfAborted();
    const caseDir = join(runDir, 'cases', caseFileName(protocolCase.id));
    const resultFile = join(caseDir, 'result.json');
    if (existsSync(resultFile)) {
      progress.info(`case ${index + 1}/${cases.length} ${protocolCase.id}: already done, kept`);
      results.push(JSON.parse(await readFile(resultFile, 'utf8')) as CaseResult);
      continue;
    }
    progress.info(`case ${index + 1}/${cases.length} ${protocolCase.id}: ${protocolCase.train.length} normal training images, ${protocolCase.test.length} test images`);
    const detector = await pipeline.createDetector();
    const t0 = performance.now();
    const checkpointDir = join(runDir, 'checkpoints', caseFileName(protocolCase.id));
    const fit = await detector.fit(protocolCase.train, { checkpointDir, signal });
    const t1 = performance.now();
    const scores = await detector.score(protocolCase.test.map((t) => t.item), `scoring test images of ${protocolCase.id}`);
    const t2 = performance.now();
    const anomalousById = new Map(protocolCase.test.map((t) => [t.item.id, t.anomalous]));
    const labelById = new Map(protocolCase.test.map((t) => [t.item.id, t.item.label]));
    const anomalous = scores.ids.map((id) => anomalousById.get(id)!);
    const metrics: CaseResult['metrics'] = {};
    for (const space of [...detector.spaces, 'combined'] as const) {
      const values = scores[space]!;
      const evaluation = evaluateScores({ normality: values, anomalous });
      metrics[space] = { auroc: evaluation.auroc, averagePrecision: evaluation.averagePrecision };
    }
    const result: CaseResult = {
      caseId: protocolCase.id,
      mode: protocolCase.mode,
      className: protocolCase.className,
      trainImages: fit.fitImages,
      heldOutImages: fit.heldOutImages,
      testImages: scores.ids.length,
      anomalousTestImages: anomalous.filter(Boolean).length,
      threshold: fit.threshold,
      metrics,
      seconds: { fit: (t1 - t0) / 1000, score: (t2 - t1) / 1000 },
      skipped: [...fit.skipped, ...scores.skipped],
    };
    await pipeline.saveDetector(detector, join(caseDir, 'detector'), { caseId: protocolCase.id });
    await detector.dispose();
    await writeFileAtomic(join(caseDir, 'scores.csv'), scoresCsv(protocolCase.id, scores, anomalous, labelById));
    // Written last: its presence marks the case as finished.
    await writeFileAtomic(resultFile, JSON.stringify(result, null, 2));
    // The saved detector holds the best students; the training checkpoint (about 1 GB for ViT-B) is no longer needed.
    await rm(checkpointDir, { recursive: true, force: true });
    const line = Object.entries(metrics).map(([space, m]) => `${space} ${m.auroc.toFixed(4)}`).join(', ');
    progress.info(`case ${protocolCase.id}: AUROC ${line}`);
    results.push(result);
  }
  return writeRunResults(pipeline, runDir, results);
}

async function writeRunResults(pipeline: Pipeline, runDir: string, cases: CaseResult[]): Promise<RunResults> {
  const backbone = await pipeline.backbone();
  const summary = (metric: 'auroc' | 'averagePrecision') =>
    summarizeCases(cases.map((c) => ({ caseId: c.caseId, metrics: Object.fromEntries(Object.entries(c.metrics).map(([s, m]) => [s, m[metric]])) })));
  const results: RunResults = {
    runId: runIdOf(pipeline.config),
    untrainedBackbone: backbone.info.untrained,
    backbone: { id: backbone.info.id, sha256: backbone.info.sha256 },
    cases,
    auroc: summary('auroc'),
    averagePrecision: summary('averagePrecision'),
    config: pipeline.config,
    packages: await packageVersions(),
  };
  await writeFileAtomic(join(runDir, 'results.json'), JSON.stringify(results, null, 2));
  const csvParts: string[] = [];
  for (const c of cases) {
    const text = await readFile(join(runDir, 'cases', caseFileName(c.caseId), 'scores.csv'), 'utf8');
    csvParts.push(csvParts.length === 0 ? text : text.slice(text.indexOf('\n') + 1));
  }
  await writeFileAtomic(join(runDir, 'scores.csv'), csvParts.join(''));
  return results;
}

/** The AUROC table of a run, for the terminal. */
export function formatRunTable(results: RunResults): string {
  const note = results.untrainedBackbone ? '\n(UNTRAINED backbone: random weights, for tests and smoke runs only)' : '';
  return `AUROC (%)\n${formatTable(results.auroc, { percent: true })}${note}`;
}

export const SCORES_CSV_HEADER = 'case,path,label,anomalous,pretrained,finetuned,combined,flagged';

function scoresCsv(caseId: string, scores: DetectorScores, anomalous: boolean[], labels: Map<string, string>): string {
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

export function stableStringify(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableStringify((value as JsonObject)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

/** Recomputes the per-case metrics and tables from a `scores.csv` written by `runProtocol`. */
export function evaluateScoresCsv(text: string, file = 'scores.csv'): { cases: { caseId: string; metrics: CaseResult['metrics'] }[]; auroc: CaseSummary; averagePrecision: CaseSummary } {
  const rows = parseCsv(text).filter((r) => r.length > 1 || r[0] !== '');
  const header = rows.shift();
  if (!header || header.join(',') !== SCORES_CSV_HEADER) {
    throw new Error(`${file}: expected the header "${SCORES_CSV_HEADER}", found "${header?.join(',') ?? ''}"`);
  }
  const byCase = new Map<string, { anomalous: boolean[]; spaces: Record<string, number[]> }>();
  rows.forEach((r, i) => {
    if (r.length !== header.length) throw new Error(`${file}: line ${i + 2} has ${r.length} fields, expected ${header.length}`);
    const [caseId, , , anomalous, pretrained, finetuned, combined] = r;
    let entry = byCase.get(caseId);
    if (!entry) byCase.set(caseId, (entry = { anomalous: [], spaces: { pretrained: [], finetuned: [], combined: [] } }));
    if (anomalous !== '0' && anomalous !== '1') throw new Error(`${file}: line ${i + 2}: "anomalous" must be 0 or 1, found "${anomalous}"`);
    entry.anomalous.push(anomalous === '1');
    for (const [space, value] of [['pretrained', pretrained], ['finetuned', finetuned], ['combined', combined]] as const) {
      if (value === '') continue;
      const number = Number(value);
      if (!Number.isFinite(number)) throw new Error(`${file}: line ${i + 2}: "${space}" must be a finite number, found "${value}"`);
      entry.spaces[space].push(number);
    }
  });
  if (byCase.size === 0) throw new Error(`${file}: no score rows`);
  const cases = [...byCase].map(([caseId, entry]) => {
    const metrics: CaseResult['metrics'] = {};
    for (const [space, values] of Object.entries(entry.spaces)) {
      if (values.length === 0) continue;
      if (values.length !== entry.anomalous.length) throw new Error(`${file}: case ${caseId} has "${space}" scores on only some rows`);
      const e = evaluateScores({ normality: Float64Array.from(values), anomalous: entry.anomalous });
      metrics[space] = { auroc: e.auroc, averagePrecision: e.averagePrecision };
    }
    return { caseId, metrics };
  });
  const summary = (metric: 'auroc' | 'averagePrecision') =>
    summarizeCases(cases.map((c) => ({ caseId: c.caseId, metrics: Object.fromEntries(Object.entries(c.metrics).map(([s, m]) => [s, m[metric]])) })));
  return { cases, auroc: summary('auroc'), averagePrecision: summary('averagePrecision') };
}
