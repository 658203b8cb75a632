import * as vega from 'vega';
import { version as vegaLiteVersion } from 'vega-lite';
import { formatDuration, readScoresCsv, SCORE_SPACES, type CaseResult, type CaseScores, type CaseSummary, type RunResults, type ScoreSpace } from '@transformaly/core';
import { histogram, histogramSpec, renderSvg, rocSeries, rocSpec, SPACE_COLORS, type Histogram } from './charts.js';
import { CONTENT_SECURITY_POLICY, escapeHtml as esc, number, percent, STYLESHEET } from './html.js';

export interface ReportInput {
  results: RunResults;
  /** The run's `scores.csv` (header `SCORES_CSV_HEADER`), from which the curves and histograms are drawn. */
  scoresCsv: string;
}

export const UNTRAINED_BANNER = 'UNTRAINED backbone — random weights, for tests and smoke runs only';

// The scores behind the charts and the metrics in results.json must be the same run's; rounding aside they agree.
const AUROC_TOLERANCE = 1e-6;

/**
 * Renders a run as one self-contained HTML page: the AUROC and average-precision tables, per case the ROC curves
 * and the normal-vs-anomalous score histograms (inline SVG, drawn here by vega), timings, the resolved config and
 * package versions. The page loads nothing and runs no script.
 */
export async function renderReport(input: ReportInput): Promise<string> {
  const { results } = input;
  const scores = readScoresCsv(input.scoresCsv);
  for (const caseId of scores.keys()) {
    if (!results.cases.some((c) => c.caseId === caseId)) {
      throw new Error(`scores.csv has scores of case "${caseId}", which results.json does not list; were they written by the same run?`);
    }
  }
  const sections: string[] = [];
  for (const [index, result] of results.cases.entries()) {
    const caseScores = scores.get(result.caseId);
    if (!caseScores) throw new Error(`scores.csv has no scores of case "${result.caseId}", which results.json lists`);
    sections.push(await caseSection(result, caseScores, index));
  }
  const anchors = new Map(results.cases.map((c, i) => [c.caseId, `case-${i + 1}`]));
  const title = `Transformaly run ${results.runId}${results.untrainedBackbone ? ' (UNTRAINED backbone)' : ''}`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="${CONTENT_SECURITY_POLICY}">
<meta name="generator" content="@transformaly/report">
<link rel="icon" href="data:,">
<title>${esc(title)}</title>
<style>${STYLESHEET}</style>
</head>
<body>
<main>
<header>
${results.untrainedBackbone ? untrainedBanner() : ''}
<h1>Transformaly run <code>${esc(results.runId)}</code></h1>
${runMeta(results)}
</header>
${failedSection(results)}<section id="summary">
<h2>Results</h2>
<div class="tables">
${summaryTable(results.auroc, 'AUROC (%)', 'auroc', anchors)}
${summaryTable(results.averagePrecision, 'Average precision (%)', 'average-precision', anchors)}
</div>
<p class="note">Per case, each feature space's score ranks the test images; AUROC takes normal images as the positive class,
average precision the anomalous ones. The mean row averages over cases, as in the paper's tables. Best space per row in green.</p>
</section>
<section id="cases">
<h2>Cases</h2>
${casesTable(results.cases, scores, anchors)}
</section>
${sections.join('\n')}
${provenance(results)}
<footer>Written by @transformaly/report; charts by vega ${esc(vegaVersion())} and vega-lite ${esc(vegaLiteVersion)}, rendered to SVG when the report was written.</footer>
</main>
</body>
</html>
`;
}

function vegaVersion(): string {
  return (vega as unknown as { version?: string }).version ?? 'unknown';
}

function untrainedBanner(): string {
  return `<div class="banner untrained" role="alert"><strong>${esc(UNTRAINED_BANNER)}</strong>
Every score and metric below comes from a randomly initialised backbone; none of them says anything about the method.</div>`;
}

function runMeta(results: RunResults): string {
  const totalSeconds = results.cases.reduce((sum, c) => sum + c.seconds.fit + c.seconds.score, 0);
  const protocol = results.config?.protocol;
  const rows: [string, string][] = [
    ['backbone', `<code>${esc(results.backbone.id)}</code>${results.untrainedBackbone ? ' <strong>(untrained, random weights)</strong>' : ''}`],
    ['backbone sha256', `<code>${esc(results.backbone.sha256)}</code>`],
  ];
  if (protocol) {
    const classes = Array.isArray(protocol.classes) ? protocol.classes.join(', ') : protocol.classes;
    rows.push(['protocol', `${esc(protocol.mode)}; classes: ${esc(classes)}`]);
  }
  const failed = results.failed?.length ?? 0;
  rows.push(['cases', failed ? `${results.cases.length} finished, <strong>${failed} failed</strong>` : String(results.cases.length)]);
  rows.push(['fit + score time', esc(formatDuration(totalSeconds))]);
  return `<dl class="meta">${rows.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v}</dd>`).join('')}</dl>`;
}

/** The cases a distributed run could not compute: listed with their errors, left out of every table and mean. */
function failedSection(results: RunResults): string {
  const failed = results.failed ?? [];
  if (failed.length === 0) return '';
  const rows = failed.map((f) => `<tr><td class="text">${esc(f.caseId)}</td><td>${f.attempts}</td><td class="text"><code>${esc(f.error)}</code></td></tr>`);
  return `<section id="failed">
<h2>Failed cases</h2>
<div class="scroll"><table class="cases">
<thead><tr><th>case</th><th>attempts</th><th class="text">error of the last attempt</th></tr></thead>
<tbody>
${rows.join('\n')}
</tbody>
</table></div>
<p class="note">These cases have no results: the tables and means below are over the finished cases only.</p>
</section>
`;
}

function spaceHeader(column: string): string {
  const color = SPACE_COLORS[column as ScoreSpace];
  return `${color ? `<span class="swatch" style="background:${color}"></span>` : ''}${esc(column)}`;
}

function summaryTable(summary: CaseSummary, caption: string, id: string, anchors: Map<string, string>): string {
  const cells = (metrics: Record<string, number>) => {
    const best = Math.max(...summary.columns.map((c) => metrics[c]).filter(Number.isFinite));
    return summary.columns
      .map((c) => {
        const v = metrics[c];
        return `<td${v === best && summary.columns.length > 1 ? ' class="best"' : ''} title="${esc(v)}">${percent(v)}</td>`;
      })
      .join('');
  };
  const body = summary.rows
    .map((r) => {
      const anchor = anchors.get(r.caseId);
      const name = anchor ? `<a href="#${anchor}">${esc(r.caseId)}</a>` : esc(r.caseId);
      return `<tr><td class="text">${name}</td>${cells(r.metrics)}</tr>`;
    })
    .join('\n');
  return `<table class="summary" id="${id}">
<caption>${esc(caption)}</caption>
<thead><tr><th>case</th>${summary.columns.map((c) => `<th>${spaceHeader(c)}</th>`).join('')}</tr></thead>
<tbody>
${body}
<tr class="mean"><td>mean</td>${cells(summary.mean)}</tr>
</tbody>
</table>`;
}

function flaggedCounts(scores: CaseScores): { anomalies: number; anomalous: number; falseAlarms: number; normal: number } {
  let anomalies = 0;
  let anomalous = 0;
  let falseAlarms = 0;
  scores.anomalous.forEach((a, i) => {
    if (a) {
      anomalous++;
      if (scores.flagged[i]) anomalies++;
    } else if (scores.flagged[i]) falseAlarms++;
  });
  return { anomalies, anomalous, falseAlarms, normal: scores.anomalous.length - anomalous };
}

const share = (part: number, whole: number) => (whole > 0 ? `${part} / ${whole} (${((100 * part) / whole).toFixed(1)}%)` : '0 / 0');

function casesTable(cases: CaseResult[], scores: Map<string, CaseScores>, anchors: Map<string, string>): string {
  const rows = cases.map((c) => {
    const f = flaggedCounts(scores.get(c.caseId)!);
    return `<tr><td class="text"><a href="#${anchors.get(c.caseId)}">${esc(c.caseId)}</a></td><td class="text">${esc(c.className)}</td>
<td>${c.trainImages}</td><td>${c.heldOutImages}</td><td>${c.testImages}</td><td>${c.anomalousTestImages}</td>
<td>${share(f.anomalies, f.anomalous)}</td><td>${share(f.falseAlarms, f.normal)}</td>
<td title="${esc(c.seconds.fit)} s">${esc(formatDuration(c.seconds.fit))}</td><td title="${esc(c.seconds.score)} s">${esc(formatDuration(c.seconds.score))}</td><td>${c.skipped.length}</td></tr>`;
  });
  const fit = cases.reduce((s, c) => s + c.seconds.fit, 0);
  const score = cases.reduce((s, c) => s + c.seconds.score, 0);
  return `<div class="scroll"><table class="cases" id="timings">
<thead><tr><th>case</th><th class="text">class</th><th>train</th><th>held out</th><th>test</th><th>anomalous</th>
<th>anomalies flagged</th><th>normal flagged</th><th>fit</th><th>score</th><th>skipped files</th></tr></thead>
<tbody>
${rows.join('\n')}
<tr class="mean"><td>total</td><td></td><td></td><td></td><td></td><td></td><td></td><td></td>
<td title="${esc(fit)} s">${esc(formatDuration(fit))}</td><td title="${esc(score)} s">${esc(formatDuration(score))}</td><td>${cases.reduce((s, c) => s + c.skipped.length, 0)}</td></tr>
</tbody>
</table></div>
<p class="note">"Flagged" counts the test images whose combined score falls below the threshold calibrated at fit time on held-out normal images.</p>`;
}

async function caseSection(result: CaseResult, scores: CaseScores, index: number): Promise<string> {
  const anchor = `case-${index + 1}`;
  if (scores.anomalous.length !== result.testImages) {
    throw new Error(`case "${result.caseId}": results.json counts ${result.testImages} test images but scores.csv has ${scores.anomalous.length} rows`);
  }
  let series;
  try {
    series = rocSeries(scores.spaces, scores.anomalous);
  } catch (error) {
    throw new Error(`case "${result.caseId}": cannot draw its ROC curves from scores.csv: ${(error as Error).message}`);
  }
  for (const s of series) {
    const reported = result.metrics[s.space]?.auroc;
    if (reported === undefined) throw new Error(`case "${result.caseId}": scores.csv has "${s.space}" scores but results.json reports no "${s.space}" metrics`);
    if (Math.abs(reported - s.auroc) > AUROC_TOLERANCE) {
      throw new Error(
        `case "${result.caseId}": results.json reports a "${s.space}" AUROC of ${reported} but the scores in scores.csv give ${s.auroc}; ` +
          'were the two files written by the same run?',
      );
    }
    // The legend shows the tables' value: two computations equal to 1e-6 may still round to different last digits.
    s.auroc = reported;
  }
  // Combined first: it is the method's score, and its histogram carries the decision threshold.
  const order: ScoreSpace[] = ['combined', ...SCORE_SPACES.filter((s) => s !== 'combined')];
  const histograms = order
    .filter((space) => scores.spaces[space])
    .map((space) => histogram(space, scores.spaces[space]!, scores.anomalous, space === 'combined' ? result.threshold : undefined))
    .filter((h): h is Histogram => h !== undefined);
  const rocSvg = await renderSvg(rocSpec(series), `ROC of ${result.caseId}`, `${anchor}-roc-`);
  const histogramSvg = histograms.length > 0 ? await renderSvg(histogramSpec(histograms), `histograms of ${result.caseId}`, `${anchor}-hist-`) : '';
  const f = flaggedCounts(scores);
  const facts: [string, string][] = [
    ['mode', esc(result.mode)],
    ['class', esc(result.className)],
    ['training images', `${result.trainImages} fitted, ${result.heldOutImages} held out for the threshold`],
    ['test images', `${result.testImages}: ${result.testImages - result.anomalousTestImages} normal, ${result.anomalousTestImages} anomalous`],
    ['threshold (combined)', `<span class="mono">${esc(number(result.threshold))}</span>`],
    ['anomalies flagged', share(f.anomalies, f.anomalous)],
    ['normal images flagged', share(f.falseAlarms, f.normal)],
    ['time', `fit ${esc(formatDuration(result.seconds.fit))}, score ${esc(formatDuration(result.seconds.score))}`],
  ];
  return `<section class="case" id="${anchor}">
<h2>${esc(result.caseId)} <small>${esc(result.mode)} · ${esc(result.className)}</small></h2>
<div class="charts">
<figure class="chart roc" data-case="${esc(result.caseId)}">${rocSvg}
<figcaption>ROC of anomaly detection per feature space (anomalies as positives); the legend gives each curve's AUROC. Dashed: chance.</figcaption></figure>
${histogramSvg ? `<figure class="chart histograms" data-case="${esc(result.caseId)}">${histogramSvg}<figcaption>${histogramCaption(histograms)}</figcaption></figure>` : ''}
</div>
<dl class="facts">${facts.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v}</dd>`).join('')}</dl>
${skippedList(result.skipped)}
</section>`;
}

function histogramCaption(histograms: Histogram[]): string {
  const parts = ['Normality scores (higher = more normal) of the normal and anomalous test images, each class as a share of its own count.'];
  const combined = histograms.find((h) => h.space === 'combined');
  if (combined?.threshold !== undefined) parts.push('Dashed line on the combined scores: the decision threshold.');
  for (const h of histograms) {
    if (h.below + h.above > 0) {
      parts.push(`${esc(h.space)}: ${[h.below > 0 ? `${h.below} below ${esc(number(h.lo))}` : '', h.above > 0 ? `${h.above} above ${esc(number(h.hi))}` : ''].filter(Boolean).join(' and ')} counted in the edge bins.`);
    }
  }
  return parts.join(' ');
}

function skippedList(skipped: CaseResult['skipped']): string {
  if (skipped.length === 0) return '';
  const items = skipped.map((s) => `<li><code>${esc(s.id)}</code>: ${esc(s.reason)}</li>`).join('\n');
  return `<details class="skipped"><summary>${skipped.length} skipped file${skipped.length === 1 ? '' : 's'}</summary><ul>
${items}
</ul></details>`;
}

function provenance(results: RunResults): string {
  const packages = Object.entries(results.packages ?? {})
    .map(([name, version]) => `<tr><td class="text"><code>${esc(name)}</code></td><td class="text"><code>${esc(version)}</code></td></tr>`)
    .join('\n');
  return `<section id="provenance">
<h2>Provenance</h2>
<details class="config"><summary>Resolved configuration</summary>
<pre>${esc(JSON.stringify(results.config, null, 2))}</pre>
</details>
<table class="packages">
<caption>Package versions</caption>
<thead><tr><th>package</th><th>version</th></tr></thead>
<tbody>
${packages}
</tbody>
</table>
</section>`;
}
