import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  csvField,
  evaluateScores,
  rocCurve,
  SCORES_CSV_HEADER,
  summarizeCases,
  type CaseResult,
  type ResolvedConfig,
  type RunResults,
} from '@transformaly/core';
import { renderReport, UNTRAINED_BANNER, writeReport } from '@transformaly/report';
import { histogram, rocSeries } from '../report/src/charts.js';
import { expectClose } from './fixtures/close.js';
import { pairwiseAuroc } from './fixtures/ranking.js';

const HOSTILE = '<script>alert(1)</script>';
const SPACES = ['pretrained', 'finetuned', 'combined'] as const;

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function gaussian(next: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
}

interface FixtureCase {
  caseId: string;
  className: string;
  rows: { path: string; label: string; anomalous: boolean; scores: Record<(typeof SPACES)[number], number> }[];
}

/** Two cases of 50 test images each; anomalies score lower, each space with a different separation. */
function fixture(untrained: boolean): { results: RunResults; scoresCsv: string; cases: FixtureCase[] } {
  const next = rng(7);
  const cases: FixtureCase[] = [
    { caseId: 'unimodal/T-shirt', className: 'T-shirt', rows: [] },
    { caseId: `unimodal/${HOSTILE}`, className: HOSTILE, rows: [] },
  ];
  for (const [c, fc] of cases.entries()) {
    for (let i = 0; i < 50; i++) {
      const anomalous = i % 2 === 1;
      const shift = anomalous ? 1 : 0;
      const pretrained = -40 + 6 * gaussian(next) - shift * (8 + 4 * c);
      const finetuned = -10 + 3 * gaussian(next) - shift * 3;
      // A far outlier, as Gaussian log-likelihoods of anomalies produce, lands in the histogram's edge bin.
      const outlier = anomalous && i === 49 ? -1e5 : 0;
      fc.rows.push({
        path: i === 3 ? `images/${HOSTILE}, "quoted".png` : `images/${c}/${i}.png`,
        label: anomalous ? (i === 5 ? '<img src=x onerror=alert(2)>' : 'Dress') : fc.className,
        anomalous,
        scores: { pretrained: pretrained + outlier, finetuned, combined: pretrained + finetuned + outlier },
      });
    }
  }
  const caseResults: CaseResult[] = cases.map((fc, c) => {
    const anomalous = fc.rows.map((r) => r.anomalous);
    const metrics: CaseResult['metrics'] = {};
    for (const space of SPACES) {
      const e = evaluateScores({ normality: Float64Array.from(fc.rows, (r) => r.scores[space]), anomalous });
      metrics[space] = { auroc: e.auroc, averagePrecision: e.averagePrecision };
    }
    return {
      caseId: fc.caseId,
      mode: 'unimodal',
      className: fc.className,
      trainImages: 180,
      heldOutImages: 20,
      testImages: fc.rows.length,
      anomalousTestImages: anomalous.filter(Boolean).length,
      threshold: -58.5,
      metrics,
      seconds: { fit: 12.5 + c, score: 3.25 },
      skipped: c === 1 ? [{ id: `bad/${HOSTILE}.png`, reason: 'not an image & "corrupt"' }] : [],
    };
  });
  const summary = (metric: 'auroc' | 'averagePrecision') =>
    summarizeCases(caseResults.map((c) => ({ caseId: c.caseId, metrics: Object.fromEntries(Object.entries(c.metrics).map(([s, m]) => [s, m[metric]])) })));
  const config = {
    data: { use: 'fashion-mnist', options: { root: '/data/fmnist', mirror: 'https://example.invalid/fmnist' } },
    protocol: { mode: 'unimodal', classes: ['T-shirt', HOSTILE] },
    backbone: { use: 'vit', options: { checkpoint: 'google/vit-base-patch16-224' } },
    runtime: { use: 'onnx', options: {} },
    distiller: { use: 'distill', options: { blocks: [11], epochs: 2 } },
    scorers: { pretrained: { use: 'gaussian', options: {} }, finetuned: { use: 'gaussian', options: {} } },
    combiner: { use: 'sum', options: {} },
    batchSize: 32,
    skipBadFiles: true,
    seed: 0,
    validationFraction: 0.1,
    threshold: { quantile: 0.05 },
    outputDir: 'results',
    plugins: [],
  } as unknown as ResolvedConfig;
  const results: RunResults = {
    runId: 'a1b2c3d4e5f6',
    untrainedBackbone: untrained,
    backbone: { id: untrained ? 'vit-tiny-random' : 'google/vit-base-patch16-224', sha256: 'f'.repeat(64) },
    cases: caseResults,
    auroc: summary('auroc'),
    averagePrecision: summary('averagePrecision'),
    config,
    packages: { node: '20.20.2', '@transformaly/core': '0.1.0', 'onnxruntime-node': '1.30.0' },
  };
  const lines = [SCORES_CSV_HEADER];
  for (const fc of cases) {
    for (const r of fc.rows) {
      const flagged = r.scores.combined < -58.5;
      lines.push([csvField(fc.caseId), csvField(r.path), csvField(r.label), r.anomalous ? 1 : 0, r.scores.pretrained, r.scores.finetuned, r.scores.combined, flagged ? 1 : 0].join(','));
    }
  }
  return { results, scoresCsv: `${lines.join('\n')}\n`, cases };
}

const between = (html: string, start: string, end: string) => {
  const i = html.indexOf(start);
  expect(i, `"${start}" in the report`).toBeGreaterThanOrEqual(0);
  return html.slice(i, html.indexOf(end, i) + end.length);
};

describe('renderReport', () => {
  const trained = fixture(false);
  let html = '';
  let fetchCalls = -1;
  beforeAll(async () => {
    const fetchSpy = vi.spyOn(globalThis, 'fetch');
    html = await renderReport({ results: trained.results, scoresCsv: trained.scoresCsv });
    fetchCalls = fetchSpy.mock.calls.length;
    fetchSpy.mockRestore();
  });

  it('is one HTML document titled with the run id and backbone', () => {
    expect(html.startsWith('<!doctype html>')).toBe(true);
    expect(html).toContain('<title>Transformaly run a1b2c3d4e5f6</title>');
    expect(html).toContain('<code>google/vit-base-patch16-224</code>');
    expect(html).toContain('f'.repeat(64));
  });

  it('lays out AUROC and average precision per case and space with the mean row, in percent', () => {
    for (const [id, summary] of [['auroc', trained.results.auroc], ['average-precision', trained.results.averagePrecision]] as const) {
      const table = between(html, `<table class="summary" id="${id}">`, '</table>');
      expect(summary.columns).toEqual(['pretrained', 'finetuned', 'combined']);
      const rows = [...table.matchAll(/<tr[^>]*>([\s\S]*?)<\/tr>/g)].map((m) => m[1]);
      // header, two cases, mean
      expect(rows).toHaveLength(4);
      const cellsOf = (row: string) => [...row.matchAll(/<td[^>]*>([\s\S]*?)<\/td>/g)].map((m) => m[1].replace(/<[^>]+>/g, ''));
      summary.rows.forEach((r, i) => {
        expect(cellsOf(rows[i + 1])).toEqual([r.caseId.replace(/[<>]/g, (c) => (c === '<' ? '&lt;' : '&gt;')), ...summary.columns.map((c) => (r.metrics[c] * 100).toFixed(1))]);
      });
      expect(cellsOf(rows[3])).toEqual(['mean', ...summary.columns.map((c) => (summary.mean[c] * 100).toFixed(1))]);
    }
    // The fixture's spaces separate differently, so the values are not all the same string.
    const combined = trained.results.auroc.rows[0].metrics.combined;
    expect(combined).toBeGreaterThan(0.6);
    expect(combined).toBeLessThan(1);
  });

  it('draws one ROC SVG per case, with a line per space, and the histograms', () => {
    const rocs = [...html.matchAll(/<figure class="chart roc" data-case="([^"]*)"><svg[\s\S]*?<\/svg>/g)];
    expect(rocs.map((m) => m[1])).toEqual(['unimodal/T-shirt', 'unimodal/&lt;script&gt;alert(1)&lt;/script&gt;']);
    for (const [svg] of rocs) {
      // vega draws each line as a path with a stroke of its space's colour
      for (const color of ['#4e79a7', '#f28e2b', '#2f8f46']) expect(svg).toMatch(new RegExp(`<path[^>]*d="M[^"]+"[^>]*stroke="${color}"`));
      const legend = svg.match(/>(pretrained|finetuned|combined) (\d+\.\d)</g) ?? [];
      expect(legend).toHaveLength(3);
    }
    const firstLegend = rocs[0][0];
    for (const space of SPACES) expect(firstLegend).toContain(`>${space} ${(trained.results.cases[0].metrics[space].auroc * 100).toFixed(1)}<`);
    expect([...html.matchAll(/<figure class="chart histograms"[^>]*><svg/g)]).toHaveLength(2);
    // The far outlier is reported, not allowed to squash the histogram.
    const caption = between(html, '<figure class="chart histograms" data-case="unimodal/T-shirt">', '</figure>');
    expect(caption).toMatch(/combined: 1 below -\d+(\.\d+)? counted in the edge bins\. pretrained: 1 below -\d+(\.\d+)? counted in the edge bins\.<\/figcaption>/);
  });

  it('escapes every string that comes from users', () => {
    expect(html).not.toContain(HOSTILE);
    expect(html).not.toContain('<img src=x');
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(html).toContain('<code>bad/&lt;script&gt;alert(1)&lt;/script&gt;.png</code>: not an image &amp; &quot;corrupt&quot;');
    expect(html.match(/<script/gi)).toBeNull();
  });

  it('references nothing outside itself', () => {
    expect(html).not.toMatch(/<script\s+src/i);
    expect(html).not.toMatch(/<link[^>]+href=["']?(https?:)?\/\//i);
    expect(html).not.toMatch(/url\(\s*["']?(https?:)?\/\//i);
    expect(html).not.toMatch(/@import/i);
    expect(html).not.toMatch(/<(img|iframe|object|embed|image|use)\b[^>]*(src|href)=["']?(https?:)?\/\//i);
    // Only the config text (escaped, in its <pre>) and the SVG namespace declarations may spell out a URL.
    const config = between(html, '<details class="config">', '</details>');
    expect(config).toContain('https://example.invalid/fmnist');
    const rest = html.replace(config, '').replace(/xmlns(:xlink)?="http:\/\/www\.w3\.org\/(2000\/svg|1999\/xlink)"/g, '');
    expect(rest).not.toMatch(/https?:/);
    expect(fetchCalls).toBe(0);
  });

  it('shows timings, the collapsed resolved config and package versions', () => {
    const cases = between(html, '<table class="cases"', '</table>');
    expect(cases).toContain('<td title="12.5 s">13s</td><td title="3.25 s">3.3s</td>');
    expect(cases).toContain('<td title="13.5 s">14s</td><td title="3.25 s">3.3s</td>');
    // the total row
    expect(cases).toContain('<td title="26 s">26s</td><td title="6.5 s">6.5s</td>');
    expect(between(html, '<section class="case" id="case-2">', '</section>')).toContain('fit 14s, score 3.3s');
    const config = between(html, '<details class="config">', '</details>');
    expect(config).not.toMatch(/<details[^>]*\bopen\b/);
    const json = config.replace(/^[\s\S]*?<pre>/, '').replace(/<\/pre>[\s\S]*$/, '');
    const unescaped = json.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, '&');
    expect(JSON.parse(unescaped)).toEqual(trained.results.config);
    const packages = between(html, '<table class="packages">', '</table>');
    expect(packages).toContain('<code>onnxruntime-node</code></td><td class="text"><code>1.30.0</code>');
  });

  it('has no untrained banner for a trained backbone, and a loud one for an untrained one', async () => {
    expect(html).not.toContain(UNTRAINED_BANNER);
    expect(html).not.toContain('class="banner');
    const untrained = fixture(true);
    const page = await renderReport({ results: untrained.results, scoresCsv: untrained.scoresCsv });
    // The words a reader sees, spelled out here rather than taken from the module under test.
    expect(page).toContain('<div class="banner untrained" role="alert"><strong>UNTRAINED backbone — random weights, for tests and smoke runs only</strong>');
    expect(UNTRAINED_BANNER).toBe('UNTRAINED backbone — random weights, for tests and smoke runs only');
    expect(page).toContain('<title>Transformaly run a1b2c3d4e5f6 (UNTRAINED backbone)</title>');
  });

  it('draws only the spaces a run has (no fine-tuned scores)', async () => {
    const { results, scoresCsv } = fixture(false);
    const drop = <T extends Record<string, unknown>>(o: T) => Object.fromEntries(Object.entries(o).filter(([k]) => k !== 'finetuned'));
    const cases = results.cases.map((c) => ({ ...c, metrics: drop(c.metrics) as CaseResult['metrics'] }));
    const pick = (s: RunResults['auroc']) => ({ columns: s.columns.filter((c) => c !== 'finetuned'), rows: s.rows.map((r) => ({ ...r, metrics: drop(r.metrics) as Record<string, number> })), mean: drop(s.mean) as Record<string, number> });
    const csv = scoresCsv
      .split('\n')
      .map((line, i) => {
        if (i === 0 || line === '') return line;
        const fields = line.match(/("([^"]|"")*"|[^,]*)(,|$)/g)!.map((f) => f.replace(/,$/, ''));
        fields[5] = '';
        return fields.slice(0, 8).join(',');
      })
      .join('\n');
    const page = await renderReport({ results: { ...results, cases, auroc: pick(results.auroc), averagePrecision: pick(results.averagePrecision) }, scoresCsv: csv });
    const roc = between(page, '<figure class="chart roc"', '</figure>');
    expect(roc).not.toContain('#f28e2b');
    expect(roc.match(/>(pretrained|finetuned|combined) \d+\.\d</g)).toHaveLength(2);
    expect(between(page, '<table class="summary" id="auroc">', '</table>')).not.toContain('finetuned');
  });

  it('draws tied and infinite scores (a constant space, a -Infinity log-likelihood)', async () => {
    const anomalous = Array.from({ length: 40 }, (_, i) => i % 4 === 0);
    const pretrained = anomalous.map(() => -5);
    const combined = anomalous.map((a, i) => (a ? (i === 0 ? -Infinity : -30 - i) : -10 - (i % 7)));
    const metrics: CaseResult['metrics'] = {};
    for (const [space, values] of [['pretrained', pretrained], ['combined', combined]] as const) {
      const e = evaluateScores({ normality: Float64Array.from(values), anomalous });
      metrics[space] = { auroc: e.auroc, averagePrecision: e.averagePrecision };
    }
    expect(metrics.pretrained.auroc).toBe(0.5);
    const base = fixture(false).results;
    const c: CaseResult = { ...base.cases[0], caseId: 'folder/normal', mode: 'folder', className: 'normal', testImages: 40, anomalousTestImages: 10, threshold: -20, metrics, skipped: [] };
    const summary = (metric: 'auroc' | 'averagePrecision') => summarizeCases([{ caseId: c.caseId, metrics: { pretrained: metrics.pretrained[metric], combined: metrics.combined[metric] } }]);
    const csv = [SCORES_CSV_HEADER, ...anomalous.map((a, i) => `folder/normal,img${i}.png,x,${a ? 1 : 0},${pretrained[i]},,${combined[i]},${combined[i] < -20 ? 1 : 0}`)].join('\n');
    expect(csv).toContain(',-Infinity,1');
    const page = await renderReport({ results: { ...base, cases: [c], auroc: summary('auroc'), averagePrecision: summary('averagePrecision') }, scoresCsv: csv });
    const roc = between(page, '<figure class="chart roc"', '</figure>');
    expect(roc).toContain('>pretrained 50.0<');
    expect(roc).toContain('>combined 100.0<');
    // The constant space is a chance diagonal from (0, 0) to (1, 1): 260 pixels square.
    expect(roc).toMatch(/d="M0,260L260,0" stroke="#4e79a7"/);
    expect(between(page, '<figure class="chart histograms"', '</figure>')).toContain('combined: 9 below -34 counted in the edge bins.');
  });

  it('refuses scores that do not belong to the results', async () => {
    const { results, scoresCsv } = fixture(false);
    const tampered = { ...results, cases: results.cases.map((c, i) => (i === 0 ? { ...c, metrics: { ...c.metrics, combined: { auroc: 0.5, averagePrecision: 0.5 } } } : c)) };
    await expect(renderReport({ results: tampered, scoresCsv })).rejects.toThrow(/case "unimodal\/T-shirt": results.json reports a "combined" AUROC of 0.5 but the scores in scores.csv give/);
    const oneCase = scoresCsv.split('\n').filter((l) => !l.startsWith(`unimodal/${HOSTILE}`)).join('\n');
    await expect(renderReport({ results, scoresCsv: oneCase })).rejects.toThrow(/scores.csv has no scores of case "unimodal\/<script>alert\(1\)<\/script>"/);
    await expect(renderReport({ results, scoresCsv: scoresCsv.replace('case,path', 'case,file') })).rejects.toThrow(/scores.csv: expected the header "case,path,label/);
    const nan = scoresCsv.split('\n');
    nan[2] = nan[2].replace(/,(-?[\d.e+-]+),(-?[\d.e+-]+),(-?[\d.e+-]+),([01])$/, ',$1,NaN,$3,$4');
    await expect(renderReport({ results, scoresCsv: nan.join('\n') })).rejects.toThrow(/scores.csv: line 3: "finetuned" must be a number, found "NaN"/);
  });
});

describe('chart data', () => {
  // 5000 test images: thousands of ROC steps, thinned for drawing without moving the curve.
  const next = rng(3);
  const anomalous = Array.from({ length: 5000 }, (_, i) => i % 5 === 0);
  const normality = Float64Array.from(anomalous, (a) => gaussian(next) - (a ? 1 : 0));

  it('thins the ROC curve to within its tolerance, keeping its ends and its area', () => {
    const [series] = rocSeries({ combined: normality }, anomalous, 2e-3);
    const full = rocCurve(normality.map((v) => -v), anomalous);
    expect(series.fpr.length).toBeLessThan(full.fpr.length / 2);
    expect([series.fpr[0], series.tpr[0]]).toEqual([0, 0]);
    expect([series.fpr.at(-1), series.tpr.at(-1)]).toEqual([1, 1]);
    for (let k = 1; k < series.fpr.length; k++) {
      expect(series.fpr[k]).toBeGreaterThanOrEqual(series.fpr[k - 1]);
      expect(series.tpr[k]).toBeGreaterThanOrEqual(series.tpr[k - 1]);
    }
    // Every dropped point is within the tolerance of the last point kept before it.
    let j = 0;
    for (let k = 0; k < full.fpr.length; k++) {
      while (j + 1 < series.fpr.length && series.fpr[j + 1] <= full.fpr[k] && series.tpr[j + 1] <= full.tpr[k]) j++;
      expect(full.fpr[k] - series.fpr[j]).toBeLessThan(2e-3 + 1e-12);
      expect(full.tpr[k] - series.tpr[j]).toBeLessThan(2e-3 + 1e-12);
    }
    // The legend's AUROC: the share of (normal, anomalous) pairs ordered right, counted directly.
    expectClose([series.auroc], [pairwiseAuroc(Array.from(normality), anomalous)], 1e-12, 'AUROC of the thinned series');
  });

  it('bins each class as shares of its own count, far outliers in the edge bins', () => {
    const withOutliers = Float64Array.from(normality);
    withOutliers[0] = -1e6;
    withOutliers[5] = -Infinity;
    const h = histogram('combined', withOutliers, anomalous, 0)!;
    for (const cls of ['normal', 'anomalous'] as const) {
      const bins = h.bins.filter((b) => b.cls === cls);
      expectClose([bins.reduce((sum, b) => sum + b.share, 0)], [1], 1e-12, `${cls} shares`);
      for (const b of bins) expect(b.end).toBeGreaterThan(b.start);
    }
    expect(h.below).toBe(2);
    expect(h.above).toBe(0);
    expect(h.lo).toBeGreaterThan(-20);
    expect(h.bins.filter((b) => b.cls === 'normal')).not.toHaveLength(0);
    expect(h.threshold).toBe(0);
    expect(histogram('combined', withOutliers, anomalous, 1e9)!.threshold).toBeUndefined();
    expect(histogram('combined', Float64Array.of(-Infinity, -Infinity), [false, true])).toBeUndefined();
  });
});

describe('writeReport', () => {
  const dirs: string[] = [];
  const runDir = () => {
    const dir = mkdtempSync(join(tmpdir(), 'transformaly-report-'));
    dirs.push(dir);
    return dir;
  };
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  it('writes report.html beside results.json and scores.csv, and nothing else', async () => {
    const dir = runDir();
    const { results, scoresCsv } = fixture(true);
    writeFileSync(join(dir, 'results.json'), JSON.stringify(results, null, 2));
    writeFileSync(join(dir, 'scores.csv'), scoresCsv);
    const path = await writeReport(dir);
    expect(path).toBe(join(dir, 'report.html'));
    expect(readdirSync(dir).sort()).toEqual(['report.html', 'results.json', 'scores.csv']);
    const html = readFileSync(path, 'utf8');
    expect(html).toBe(await renderReport({ results, scoresCsv }));
    expect(html).toContain('<strong>UNTRAINED backbone — random weights, for tests and smoke runs only</strong>');
  });

  it('names the file and the field when the inputs are wrong', async () => {
    const dir = runDir();
    await expect(writeReport(dir)).rejects.toThrow(`${join(dir, 'results.json')} does not exist`);
    const { results, scoresCsv } = fixture(false);
    writeFileSync(join(dir, 'results.json'), JSON.stringify({ ...results, cases: [{ ...results.cases[0], seconds: { fit: '12' } }] }));
    await expect(writeReport(dir)).rejects.toThrow(`${join(dir, 'results.json')}: "cases[0].seconds.fit" must be a number, found "12"`);
    writeFileSync(join(dir, 'results.json'), '{"runId": ');
    await expect(writeReport(dir)).rejects.toThrow(`${join(dir, 'results.json')} is not valid JSON`);
    writeFileSync(join(dir, 'results.json'), JSON.stringify(results));
    await expect(writeReport(dir)).rejects.toThrow(`${join(dir, 'scores.csv')} does not exist`);
    writeFileSync(join(dir, 'scores.csv'), scoresCsv.replace(/,1\n/, ',yes\n'));
    await expect(writeReport(dir)).rejects.toThrow(/cannot write the report of .*: scores.csv: line \d+: "flagged" must be 0 or 1, found "yes"/);
    expect(readdirSync(dir).sort()).toEqual(['results.json', 'scores.csv']);
  });
});
