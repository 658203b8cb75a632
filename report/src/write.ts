import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic, type RunResults } from '@transformaly/core';
import { renderReport } from './render.js';

/**
 * Reads `results.json` and `scores.csv` from a run folder written by `runProtocol`, renders the report and writes it
 * to `report.html` beside them (atomically: a reader sees the old report or the new one). Returns the report's path.
 */
export async function writeReport(runDir: string): Promise<string> {
  const resultsFile = join(runDir, 'results.json');
  const scoresFile = join(runDir, 'scores.csv');
  const results = checkRunResults(parseJson(await readText(resultsFile), resultsFile), resultsFile);
  const scoresCsv = await readText(scoresFile);
  let html: string;
  try {
    html = await renderReport({ results, scoresCsv });
  } catch (error) {
    throw new Error(`cannot write the report of ${runDir}: ${(error as Error).message}`, { cause: error });
  }
  const out = join(runDir, 'report.html');
  await writeFileAtomic(out, html);
  return out;
}

async function readText(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error(`${file} does not exist; a report needs the results.json and scores.csv that "transformaly run" writes`);
    }
    throw error;
  }
}

function parseJson(text: string, file: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${file} is not valid JSON: ${(error as Error).message}`);
  }
}

type Check = (value: unknown, where: string) => void;

const fail = (file: string, where: string, expected: string, value: unknown): never => {
  const found = value === undefined ? 'nothing' : JSON.stringify(value)?.slice(0, 80);
  throw new Error(`${file}: "${where}" must be ${expected}, found ${found}`);
};

/** Checks the parts of a `results.json` that the report reads, naming the first field that is off. */
export function checkRunResults(value: unknown, file = 'results.json'): RunResults {
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  const object: Check = (v, where) => {
    if (!isObject(v)) fail(file, where, 'an object', v);
  };
  const string: Check = (v, where) => {
    if (typeof v !== 'string') fail(file, where, 'a string', v);
  };
  const num: Check = (v, where) => {
    if (typeof v !== 'number') fail(file, where, 'a number', v);
  };
  const array: Check = (v, where) => {
    if (!Array.isArray(v)) fail(file, where, 'an array', v);
  };
  object(value, '(top level)');
  const r = value as Record<string, unknown>;
  string(r.runId, 'runId');
  if (typeof r.untrainedBackbone !== 'boolean') fail(file, 'untrainedBackbone', 'true or false', r.untrainedBackbone);
  object(r.backbone, 'backbone');
  string((r.backbone as Record<string, unknown>).id, 'backbone.id');
  string((r.backbone as Record<string, unknown>).sha256, 'backbone.sha256');
  array(r.cases, 'cases');
  (r.cases as unknown[]).forEach((c, i) => {
    const at = `cases[${i}]`;
    object(c, at);
    const k = c as Record<string, unknown>;
    for (const f of ['caseId', 'mode', 'className'] as const) string(k[f], `${at}.${f}`);
    for (const f of ['trainImages', 'heldOutImages', 'testImages', 'anomalousTestImages', 'threshold'] as const) num(k[f], `${at}.${f}`);
    object(k.metrics, `${at}.metrics`);
    for (const [space, m] of Object.entries(k.metrics as Record<string, unknown>)) {
      object(m, `${at}.metrics.${space}`);
      num((m as Record<string, unknown>).auroc, `${at}.metrics.${space}.auroc`);
      num((m as Record<string, unknown>).averagePrecision, `${at}.metrics.${space}.averagePrecision`);
    }
    object(k.seconds, `${at}.seconds`);
    num((k.seconds as Record<string, unknown>).fit, `${at}.seconds.fit`);
    num((k.seconds as Record<string, unknown>).score, `${at}.seconds.score`);
    array(k.skipped, `${at}.skipped`);
    (k.skipped as unknown[]).forEach((s, j) => {
      object(s, `${at}.skipped[${j}]`);
      string((s as Record<string, unknown>).id, `${at}.skipped[${j}].id`);
      string((s as Record<string, unknown>).reason, `${at}.skipped[${j}].reason`);
    });
  });
  for (const table of ['auroc', 'averagePrecision'] as const) {
    object(r[table], table);
    const t = r[table] as Record<string, unknown>;
    array(t.columns, `${table}.columns`);
    (t.columns as unknown[]).forEach((c, i) => string(c, `${table}.columns[${i}]`));
    array(t.rows, `${table}.rows`);
    (t.rows as unknown[]).forEach((row, i) => {
      object(row, `${table}.rows[${i}]`);
      string((row as Record<string, unknown>).caseId, `${table}.rows[${i}].caseId`);
      object((row as Record<string, unknown>).metrics, `${table}.rows[${i}].metrics`);
      for (const c of t.columns as string[]) num(((row as Record<string, unknown>).metrics as Record<string, unknown>)[c], `${table}.rows[${i}].metrics.${c}`);
    });
    object(t.mean, `${table}.mean`);
    for (const c of t.columns as string[]) num((t.mean as Record<string, unknown>)[c], `${table}.mean.${c}`);
  }
  if (r.failed !== undefined) {
    array(r.failed, 'failed');
    (r.failed as unknown[]).forEach((f, i) => {
      object(f, `failed[${i}]`);
      string((f as Record<string, unknown>).caseId, `failed[${i}].caseId`);
      string((f as Record<string, unknown>).error, `failed[${i}].error`);
      num((f as Record<string, unknown>).attempts, `failed[${i}].attempts`);
    });
  }
  object(r.config, 'config');
  object(r.packages, 'packages');
  for (const [name, version] of Object.entries(r.packages as Record<string, unknown>)) string(version, `packages.${name}`);
  return value as RunResults;
}
