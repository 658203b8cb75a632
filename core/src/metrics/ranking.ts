// Ranking metrics with scikit-learn 1.2.1 semantics (roc_auc_score, average_precision_score, roc_curve).
// Every metric is built on one O(n log n) pass: the counts of positives and negatives scoring at least each
// distinct score, which is what sklearn's `_binary_clf_curve` computes.

/** A receiver operating characteristic curve, as `sklearn.metrics.roc_curve(drop_intermediate=True)` returns it. */
export interface RocCurve {
  /** False positive rate at each threshold, increasing from 0 to 1. */
  fpr: Float64Array;
  /** True positive rate at each threshold, increasing from 0 to 1. */
  tpr: Float64Array;
  /** Decreasing score thresholds; a sample is predicted positive when its score is >= the threshold.
   * `thresholds[0]` is the maximum score + 1 (sklearn 1.2), so that the curve starts at (0, 0). */
  thresholds: Float64Array;
}

/** Cumulative counts at each distinct score, from the highest score down. */
interface ClfCurve {
  fps: Float64Array;
  tps: Float64Array;
  thresholds: Float64Array;
}

interface Checked {
  positives: Float64Array;
  negatives: Float64Array;
}

/** Splits scores by class and sorts each ascending; rejects inputs on which the metrics are not defined. */
function split(scores: ArrayLike<number>, positive: ArrayLike<boolean>, metric: string): Checked {
  if (scores.length !== positive.length) {
    throw new Error(`${metric}: ${scores.length} scores but ${positive.length} labels; they must have the same length`);
  }
  let nPos = 0;
  for (let i = 0; i < positive.length; i++) {
    const label = positive[i];
    if (typeof label !== 'boolean') {
      throw new Error(`${metric}: label ${i} is ${String(label)}; labels must be booleans (true = positive)`);
    }
    if (label) nPos++;
  }
  const positives = new Float64Array(nPos);
  const negatives = new Float64Array(scores.length - nPos);
  let p = 0;
  let q = 0;
  for (let i = 0; i < scores.length; i++) {
    const s = scores[i];
    // Infinities are ordered and therefore allowed; NaN has no place in a ranking.
    if (typeof s !== 'number' || Number.isNaN(s)) throw new Error(`${metric}: score ${i} is ${String(s)}; scores must be numbers, not NaN`);
    if (positive[i]) positives[p++] = s;
    else negatives[q++] = s;
  }
  // Native typed-array sort: numeric, ascending, no comparator calls.
  positives.sort();
  negatives.sort();
  return { positives, negatives };
}

/** sklearn's `_binary_clf_curve`: counts of positives (tps) and negatives (fps) scoring >= each distinct score. */
function clfCurve({ positives, negatives }: Checked): ClfCurve {
  const fps: number[] = [];
  const tps: number[] = [];
  const thresholds: number[] = [];
  let i = positives.length - 1;
  let j = negatives.length - 1;
  let tp = 0;
  let fp = 0;
  while (i >= 0 || j >= 0) {
    const a = i >= 0 ? positives[i] : -Infinity;
    const b = j >= 0 ? negatives[j] : -Infinity;
    // When only -Infinity scores remain, the side that has run out must not be taken as a tie.
    const t = i < 0 ? b : j < 0 ? a : Math.max(a, b);
    while (i >= 0 && positives[i] === t) {
      tp++;
      i--;
    }
    while (j >= 0 && negatives[j] === t) {
      fp++;
      j--;
    }
    fps.push(fp);
    tps.push(tp);
    thresholds.push(t);
  }
  return { fps: Float64Array.from(fps), tps: Float64Array.from(tps), thresholds: Float64Array.from(thresholds) };
}

function requireBothClasses(checked: Checked, metric: string): void {
  if (checked.positives.length === 0 || checked.negatives.length === 0) {
    const missing = checked.positives.length === 0 ? 'positive' : 'negative';
    throw new Error(
      `${metric}: no ${missing} samples among ${checked.positives.length + checked.negatives.length}; ` +
        'the ROC curve and its area are undefined unless both classes are present',
    );
  }
}

function roc(checked: Checked): RocCurve {
  let { fps, tps, thresholds } = clfCurve(checked);
  if (fps.length > 2) {
    // drop_intermediate: drop the points collinear with their neighbours (zero second difference in both counts).
    const keep: number[] = [0];
    for (let k = 1; k < fps.length - 1; k++) {
      if (fps[k + 1] - 2 * fps[k] + fps[k - 1] !== 0 || tps[k + 1] - 2 * tps[k] + tps[k - 1] !== 0) keep.push(k);
    }
    keep.push(fps.length - 1);
    fps = Float64Array.from(keep, (k) => fps[k]);
    tps = Float64Array.from(keep, (k) => tps[k]);
    thresholds = Float64Array.from(keep, (k) => thresholds[k]);
  }
  const n = fps.length + 1;
  const fpr = new Float64Array(n);
  const tpr = new Float64Array(n);
  const th = new Float64Array(n);
  const totalNeg = fps[fps.length - 1];
  const totalPos = tps[tps.length - 1];
  th[0] = thresholds[0] + 1;
  for (let k = 1; k < n; k++) {
    fpr[k] = fps[k - 1] / totalNeg;
    tpr[k] = tps[k - 1] / totalPos;
    th[k] = thresholds[k - 1];
  }
  return { fpr, tpr, thresholds: th };
}

/** `sklearn.metrics.roc_curve(positive, scores, drop_intermediate=True)` as of sklearn 1.2.1. */
export function rocCurve(scores: ArrayLike<number>, positive: ArrayLike<boolean>): RocCurve {
  const checked = split(scores, positive, 'rocCurve');
  requireBothClasses(checked, 'rocCurve');
  return roc(checked);
}

/** Trapezoidal area under a curve whose x is non-decreasing (np.trapz). */
function trapezoid(x: Float64Array, y: Float64Array): number {
  let area = 0;
  for (let k = 1; k < x.length; k++) area += ((x[k] - x[k - 1]) * (y[k] + y[k - 1])) / 2;
  return area;
}

/**
 * Area under the ROC curve, `sklearn.metrics.roc_auc_score` for binary labels: trapezoidal over the distinct
 * thresholds, so tied scores count half. Higher scores are meant to indicate the positive class.
 */
export function auroc(scores: ArrayLike<number>, positive: ArrayLike<boolean>): number {
  const checked = split(scores, positive, 'auroc');
  requireBothClasses(checked, 'auroc');
  const curve = roc(checked);
  return trapezoid(curve.fpr, curve.tpr);
}

/**
 * `sklearn.metrics.average_precision_score` for binary labels: sum over thresholds of (R_n - R_{n-1}) * P_n,
 * step-wise without interpolation. Needs at least one positive; without negatives it is 1.
 */
export function averagePrecision(scores: ArrayLike<number>, positive: ArrayLike<boolean>): number {
  const checked = split(scores, positive, 'averagePrecision');
  if (checked.positives.length === 0) {
    throw new Error(`averagePrecision: no positive samples among ${checked.negatives.length}; average precision is undefined without positives`);
  }
  const { fps, tps } = clfCurve(checked);
  const totalPos = tps[tps.length - 1];
  let sum = 0;
  let previousRecall = 0;
  for (let k = 0; k < tps.length; k++) {
    const recall = tps[k] / totalPos;
    sum += (recall - previousRecall) * (tps[k] / (tps[k] + fps[k]));
    previousRecall = recall;
  }
  return sum;
}

/** What `evaluateScores` reports for one case. */
export interface ScoreEvaluation {
  /** AUROC with the normal images as the positive class, ranked by normality score (equivalently: anomalous images
   * as positive, ranked by minus normality). */
  auroc: number;
  /** Average precision with the anomalous images as the positive class, ranked by minus normality score. */
  averagePrecision: number;
  /** ROC curve of anomaly detection: positive = anomalous, score = minus normality, so `thresholds` are thresholds
   * on the anomaly score `-normality`, `tpr` is the fraction of anomalies flagged and `fpr` the fraction of normal
   * images flagged. Its area equals `auroc`. */
  roc: RocCurve;
}

/** Evaluates normality scores (higher = more normal) against anomaly labels. */
export function evaluateScores(input: { normality: Float64Array; anomalous: boolean[] }): ScoreEvaluation {
  const { normality, anomalous } = input;
  if (normality.length !== anomalous.length) {
    throw new Error(`evaluateScores: ${normality.length} normality scores but ${anomalous.length} anomaly labels; they must have the same length`);
  }
  const nAnomalous = anomalous.reduce((n, a) => n + (a ? 1 : 0), 0);
  if (nAnomalous === 0 || nAnomalous === anomalous.length) {
    throw new Error(
      `evaluateScores: all ${anomalous.length} test images are ${nAnomalous === 0 ? 'normal' : 'anomalous'}; ` +
        'AUROC and average precision need both normal and anomalous test images',
    );
  }
  const anomalyScore = new Float64Array(normality.length);
  for (let i = 0; i < normality.length; i++) anomalyScore[i] = -normality[i];
  const normal = anomalous.map((a) => !a);
  return {
    auroc: auroc(normality, normal),
    averagePrecision: averagePrecision(anomalyScore, anomalous),
    roc: rocCurve(anomalyScore, anomalous),
  };
}
