import { parse, View, Warn, type Loader, type ViewOptions } from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { rocCurve, type ScoreSpace } from '@transformaly/core';

/** One colour per feature space, the same in every chart and table of the report. */
export const SPACE_COLORS: Record<ScoreSpace, string> = { pretrained: '#4e79a7', finetuned: '#f28e2b', combined: '#2f8f46' };
const CLASS_COLORS = { normal: '#4e79a7', anomalous: '#e15759' };
const FONT = 'system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif';

const CHART_CONFIG = {
  font: FONT,
  background: 'white',
  view: { stroke: '#d0d7de' },
  axis: { labelColor: '#444', titleColor: '#222', gridColor: '#eaeef2', domainColor: '#888', tickColor: '#888', titleFontWeight: 600 },
  legend: { labelColor: '#333', titleColor: '#222', titleFontWeight: 600 },
  title: { fontSize: 13, fontWeight: 600, color: '#222', anchor: 'start' },
} as const;

// ---------------------------------------------------------------------------
// ROC

export interface RocSeries {
  space: ScoreSpace;
  /** Area under the full (not thinned) curve, shown in the legend. */
  auroc: number;
  fpr: number[];
  tpr: number[];
}

/**
 * The anomaly-detection ROC curve of each space: positive = anomalous, ranked by minus the normality score, so its
 * area is the AUROC that `evaluateScores` reports. Points closer than `tolerance` to the last kept one are dropped:
 * a test set of thousands of images gives thousands of steps, far below the resolution of a 260-pixel chart (2e-3 of it is half a pixel).
 */
export function rocSeries(spaces: Partial<Record<ScoreSpace, Float64Array>>, anomalous: boolean[], tolerance = 2e-3): RocSeries[] {
  const out: RocSeries[] = [];
  for (const [space, normality] of Object.entries(spaces) as [ScoreSpace, Float64Array][]) {
    const anomaly = normality.map((v) => -v);
    const curve = rocCurve(anomaly, anomalous);
    let area = 0;
    for (let k = 1; k < curve.fpr.length; k++) area += ((curve.fpr[k] - curve.fpr[k - 1]) * (curve.tpr[k] + curve.tpr[k - 1])) / 2;
    const fpr = [curve.fpr[0]];
    const tpr = [curve.tpr[0]];
    const last = curve.fpr.length - 1;
    for (let k = 1; k < last; k++) {
      if (Math.abs(curve.fpr[k] - fpr[fpr.length - 1]) >= tolerance || Math.abs(curve.tpr[k] - tpr[tpr.length - 1]) >= tolerance) {
        fpr.push(curve.fpr[k]);
        tpr.push(curve.tpr[k]);
      }
    }
    fpr.push(curve.fpr[last]);
    tpr.push(curve.tpr[last]);
    out.push({ space, auroc: area, fpr, tpr });
  }
  return out;
}

export function rocSpec(series: RocSeries[]): TopLevelSpec {
  const label = (s: RocSeries) => `${s.space} ${(s.auroc * 100).toFixed(1)}`;
  const values = series.flatMap((s) => s.fpr.map((x, i) => ({ series: label(s), i, fpr: x, tpr: s.tpr[i] })));
  return {
    width: 260,
    height: 260,
    config: CHART_CONFIG,
    title: 'ROC',
    layer: [
      {
        data: { values: [{ fpr: 0, tpr: 0 }, { fpr: 1, tpr: 1 }] },
        mark: { type: 'line', color: '#aaa', strokeDash: [4, 4], strokeWidth: 1, aria: false },
        encoding: { x: { field: 'fpr', type: 'quantitative' }, y: { field: 'tpr', type: 'quantitative' } },
      },
      {
        data: { values },
        // aria: false on data marks: a label per drawn point would outweigh the chart (axes and legend keep theirs).
        mark: { type: 'line', strokeWidth: 2, interpolate: 'linear', aria: false },
        encoding: {
          x: {
            field: 'fpr',
            type: 'quantitative',
            title: 'false positive rate (normal images flagged)',
            scale: { domain: [0, 1], nice: false },
          },
          y: {
            field: 'tpr',
            type: 'quantitative',
            title: 'true positive rate (anomalies flagged)',
            scale: { domain: [0, 1], nice: false },
          },
          color: {
            field: 'series',
            type: 'nominal',
            title: 'AUROC (%)',
            scale: { domain: series.map(label), range: series.map((s) => SPACE_COLORS[s.space]) },
            legend: { orient: 'bottom-right', fillColor: 'white', padding: 6, strokeColor: '#d0d7de', labelFontSize: 11 },
          },
          // A ROC curve is a path through its points in threshold order, not sorted by x: keep vega's hands off.
          order: { field: 'i', type: 'quantitative' },
        },
      },
    ],
  };
}

// ---------------------------------------------------------------------------
// Histograms

export interface Histogram {
  space: ScoreSpace;
  lo: number;
  hi: number;
  bins: { cls: 'normal' | 'anomalous'; start: number; end: number; share: number }[];
  /** Scores below `lo` / above `hi` (including infinite ones), counted in the first / last bin. */
  below: number;
  above: number;
  /** The fit-time threshold, when it is drawn (combined space only, and only when inside the range). */
  threshold?: number;
}

/**
 * Normal vs anomalous histogram of one space's normality scores, each class as a share of its own count (a
 * unimodal test set has nine anomalies per normal image, so raw counts would hide the normal class).
 * Log-likelihoods of anomalies have tails reaching orders of magnitude below the normal scores; the range is
 * therefore the normal scores' central 98% widened by three times its width on each side (never past the extreme
 * scores), and what falls outside is counted in the edge bins, so the overlap near the threshold stays readable.
 */
export function histogram(space: ScoreSpace, normality: Float64Array, anomalous: boolean[], threshold?: number): Histogram | undefined {
  const finite = Float64Array.from(normality.filter((v) => Number.isFinite(v))).sort();
  if (finite.length === 0) return undefined;
  const normalFinite = Float64Array.from(normality.filter((v, i) => !anomalous[i] && Number.isFinite(v))).sort();
  const reference = normalFinite.length > 0 ? normalFinite : finite;
  const nLo = sortedQuantile(reference, 0.01);
  const nHi = sortedQuantile(reference, 0.99);
  const min = finite[0];
  const max = finite[finite.length - 1];
  const width = nHi > nLo ? nHi - nLo : max - min;
  let lo = Math.max(min, nLo - 3 * width);
  let hi = Math.min(max, nHi + 3 * width);
  if (!(hi > lo)) {
    // Every score is (nearly) the same: a narrow window around it keeps the bars visible.
    const half = lo !== 0 ? Math.abs(lo) * 0.01 : 1;
    lo -= half;
    hi += half;
  }
  const binCount = Math.min(40, Math.max(10, Math.ceil(Math.sqrt(finite.length))));
  const step = (hi - lo) / binCount;
  const counts = { normal: new Float64Array(binCount), anomalous: new Float64Array(binCount) };
  const totals = { normal: 0, anomalous: 0 };
  let below = 0;
  let above = 0;
  normality.forEach((v, i) => {
    if (Number.isNaN(v)) return;
    const cls = anomalous[i] ? 'anomalous' : 'normal';
    if (v < lo) below++;
    if (v > hi) above++;
    const bin = Math.min(binCount - 1, Math.max(0, Math.floor((v - lo) / step)));
    counts[cls][bin]++;
    totals[cls]++;
  });
  const bins: Histogram['bins'] = [];
  for (const cls of ['normal', 'anomalous'] as const) {
    if (totals[cls] === 0) continue;
    counts[cls].forEach((count, b) => {
      if (count > 0) bins.push({ cls, start: lo + b * step, end: lo + (b + 1) * step, share: count / totals[cls] });
    });
  }
  const drawn = threshold !== undefined && Number.isFinite(threshold) && threshold >= lo && threshold <= hi ? threshold : undefined;
  return { space, lo, hi, bins, below, above, threshold: drawn };
}

function sortedQuantile(sorted: Float64Array, q: number): number {
  const pos = q * (sorted.length - 1);
  const k = Math.floor(pos);
  const next = Math.min(k + 1, sorted.length - 1);
  return sorted[k] + (sorted[next] - sorted[k]) * (pos - k);
}

export function histogramSpec(histograms: Histogram[]): TopLevelSpec {
  return {
    config: CHART_CONFIG,
    resolve: { scale: { x: 'independent', y: 'independent' } },
    hconcat: histograms.map((h) => ({
      width: 170,
      height: 130,
      title: h.space,
      layer: [
        {
          data: { values: h.bins },
          mark: { type: 'rect', opacity: 0.55, stroke: 'white', strokeWidth: 0.5, aria: false },
          encoding: {
            x: { field: 'start', type: 'quantitative', title: 'normality score', scale: { domain: [h.lo, h.hi], nice: false, zero: false }, axis: { format: '~s', tickCount: 5 } },
            x2: { field: 'end' },
            y: { field: 'share', type: 'quantitative', title: 'share of class', axis: { format: '.0%', tickCount: 4 }, stack: null },
            y2: { datum: 0 },
            color: {
              field: 'cls',
              type: 'nominal',
              title: null,
              scale: { domain: ['normal', 'anomalous'], range: [CLASS_COLORS.normal, CLASS_COLORS.anomalous] },
              legend: { orient: 'top', direction: 'horizontal' },
            },
          },
        },
        ...(h.threshold === undefined
          ? []
          : [
              {
                data: { values: [{ threshold: h.threshold }] },
                mark: { type: 'rule' as const, color: '#222', strokeDash: [5, 3], strokeWidth: 1.5, aria: false },
                encoding: { x: { field: 'threshold', type: 'quantitative' as const } },
              },
            ]),
      ],
    })),
  };
}

// ---------------------------------------------------------------------------
// Rendering

type Logger = NonNullable<ViewOptions['logger']>;

/** Collects vega's and vega-lite's messages: a warning from a spec this module wrote is a bug, never noise. */
function collectingLogger(messages: string[]): Logger {
  let level = Warn;
  const logger: Logger = {
    level(value?: number) {
      if (value === undefined) return level;
      level = value;
      return logger;
    },
    error(...args: unknown[]) {
      messages.push(`error: ${args.map(String).join(' ')}`);
      return logger;
    },
    warn(...args: unknown[]) {
      if (level >= Warn) messages.push(`warning: ${args.map(String).join(' ')}`);
      return logger;
    },
    info() {
      return logger;
    },
    debug() {
      return logger;
    },
  };
  return logger;
}

/** A loader that refuses everything: every chart carries its data inline, and a report must never reach out. */
const OFFLINE_LOADER: Loader = {
  load: (uri) => Promise.reject(new Error(`report charts load nothing, but a chart asked for ${uri}`)),
  sanitize: (uri) => Promise.reject(new Error(`report charts load nothing, but a chart asked for ${uri}`)),
  http: (uri) => Promise.reject(new Error(`report charts load nothing, but a chart asked for ${uri}`)),
  file: (name) => Promise.reject(new Error(`report charts load nothing, but a chart asked for ${name}`)),
};

/**
 * Compiles a vega-lite spec and renders it headless to an SVG string. No canvas package is needed: vega measures
 * text by estimate when `canvas` is absent. Element ids (clip paths, gradients) are prefixed with `idPrefix`,
 * because vega numbers them per render and several SVGs share one HTML document.
 */
export async function renderSvg(spec: TopLevelSpec, name: string, idPrefix: string): Promise<string> {
  const messages: string[] = [];
  const logger = collectingLogger(messages);
  const vegaSpec = compile(spec, { logger }).spec;
  const view = new View(parse(vegaSpec), { renderer: 'none', loader: OFFLINE_LOADER, logger, logLevel: Warn });
  let svg: string;
  try {
    svg = await view.toSVG();
  } finally {
    view.finalize();
  }
  if (messages.length > 0) throw new Error(`report: chart "${name}" did not render cleanly:\n${messages.join('\n')}`);
  return roundCoordinates(svg)
    .replace(/\bid="([^"]+)"/g, (_m, id: string) => `id="${idPrefix}${id}"`)
    .replace(/url\(#([^)]+)\)/g, (_m, id: string) => `url(#${idPrefix}${id})`)
    .replace(/href="#([^"]+)"/g, (_m, id: string) => `href="#${idPrefix}${id}"`);
}

/** Geometry attributes to a tenth of a pixel: vega writes full doubles (`11.200000000000001`), tripling the file size. */
function roundCoordinates(svg: string): string {
  return svg.replace(/ (d|transform|x|y|x1|x2|y1|y2|width|height)="([^"]*)"/g, (_m, name: string, value: string) =>
    ` ${name}="${value.replace(/-?\d+\.\d{2,}(e-?\d+)?/g, (n) => String(Number(Number(n).toFixed(1))))}"`,
  );
}
