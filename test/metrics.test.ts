import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { auroc, averagePrecision, evaluateScores, formatTable, rocCurve, summarizeCases } from '@transformaly/core';
import { expectClose } from './fixtures/close.js';
import { definitionAveragePrecision, pairwiseAuroc } from './fixtures/ranking.js';

interface Curve {
  fpr: number[];
  tpr: number[];
  thresholds: number[];
}
interface GoldenCase {
  name: string;
  scores: number[];
  positive: boolean[];
  auroc: number;
  averagePrecision: number;
  roc: Curve;
}
interface GoldenEvaluate {
  name: string;
  normality: number[];
  anomalous: boolean[];
  auroc: number;
  averagePrecision: number;
  roc: Curve;
}

const golden = JSON.parse(readFileSync(new URL('./golden/metrics/sklearn_metrics.json', import.meta.url), 'utf8')) as {
  sklearn: string;
  cases: GoldenCase[];
  evaluate: GoldenEvaluate[];
};

function expectCurve(actual: { fpr: Float64Array; tpr: Float64Array; thresholds: Float64Array }, expected: Curve, name: string) {
  // Rates lie in [0, 1] and end at 1, so the relative rule is an absolute 1e-12 here.
  expectClose(actual.fpr, expected.fpr, 1e-12, `${name} fpr`);
  expectClose(actual.tpr, expected.tpr, 1e-12, `${name} tpr`);
  // Thresholds are scores (or max + 1), so they must match exactly.
  expect(Array.from(actual.thresholds), `${name} thresholds`).toEqual(expected.thresholds);
}

describe('ranking metrics against scikit-learn 1.2.1', () => {
  it('golden file comes from sklearn 1.2.1 and covers ties, constant, integer and random scores', () => {
    expect(golden.sklearn).toBe('1.2.1');
    const names = golden.cases.map((c) => c.name);
    expect(names).toEqual(expect.arrayContaining(['heavy-ties', 'all-equal-scores', 'integer-scores', 'random-1000']));
    expect(golden.cases.find((c) => c.name === 'random-1000')!.scores).toHaveLength(1000);
  });

  for (const c of golden.cases) {
    it(`${c.name}: auroc, averagePrecision and rocCurve match`, () => {
      expectClose([auroc(c.scores, c.positive), averagePrecision(c.scores, c.positive)], [c.auroc, c.averagePrecision], 1e-12, `${c.name} AUROC, AP`);
      expectCurve(rocCurve(c.scores, c.positive), c.roc, c.name);
    });
  }

  it('does not depend on the input order of tied scores', () => {
    const c = golden.cases.find((g) => g.name === 'heavy-ties')!;
    const order = c.scores.map((_, i) => i).reverse();
    const scores = order.map((i) => c.scores[i]);
    const positive = order.map((i) => c.positive[i]);
    expectClose([auroc(scores, positive), averagePrecision(scores, positive)], [c.auroc, c.averagePrecision], 1e-12, 'reversed AUROC, AP');
  });

  it('accepts typed arrays and treats -0 and +0 as one threshold', () => {
    const scores = new Float64Array([0, -0, 1, -0, 0]);
    const positive = [true, false, true, true, false];
    // Positives {1, 0, -0}, negatives {-0, 0}: pairs (1, .) win twice, the four zero ties count half.
    expectClose([auroc(scores, positive)], [(2 + 4 * 0.5) / 6], 1e-15, 'AUROC');
    expect(rocCurve(scores, positive).thresholds).toHaveLength(3);
  });

  it('orders infinite scores like any other', () => {
    expectClose([auroc([Infinity, -Infinity, 0, -Infinity], [true, false, true, true])], [(1 + 1 + 0.5) / 3], 1e-15, 'AUROC');
    expect(rocCurve([Infinity, 1], [true, false]).thresholds[0]).toBe(Infinity);
  });
});

describe('metric errors', () => {
  it('rejects a length mismatch', () => {
    expect(() => auroc([1, 2, 3], [true, false])).toThrow(/3 scores but 2 labels/);
    expect(() => averagePrecision([1], [true, false])).toThrow(/1 scores but 2 labels/);
    expect(() => rocCurve([1, 2], [true])).toThrow(/same length/);
  });

  it('rejects a single class instead of returning NaN', () => {
    expect(() => auroc([1, 2], [true, true])).toThrow(/auroc: no negative samples/);
    expect(() => auroc([1, 2], [false, false])).toThrow(/auroc: no positive samples/);
    expect(() => rocCurve([1, 2], [false, false])).toThrow(/no positive samples/);
    expect(() => averagePrecision([1, 2], [false, false])).toThrow(/averagePrecision: no positive samples/);
    expect(() => auroc([], [])).toThrow(/no positive samples among 0/);
  });

  it('average precision without negatives is 1, as in sklearn', () => {
    expect(averagePrecision([0.3, 0.1], [true, true])).toBe(1);
  });

  it('rejects NaN scores and non-boolean labels, naming the index', () => {
    expect(() => auroc([1, NaN, 2], [true, false, false])).toThrow(/score 1 is NaN/);
    expect(() => auroc([1, 2], [true, 1 as unknown as boolean])).toThrow(/label 1 is 1/);
  });
});

describe('evaluateScores', () => {
  const g = golden.evaluate[0];

  it('AUROC ranks normal first by normality; AP and ROC rank anomalies first by minus normality', () => {
    const result = evaluateScores({ normality: Float64Array.from(g.normality), anomalous: g.anomalous });
    expectClose([result.auroc, result.averagePrecision], [g.auroc, g.averagePrecision], 1e-12, 'AUROC, AP');
    expectCurve(result.roc, g.roc, g.name);
    // The two AUROC conventions agree, and the ROC curve's area is the AUROC.
    const anomalyScores = g.normality.map((v) => -v);
    expectClose([auroc(anomalyScores, g.anomalous)], [result.auroc], 1e-12, 'AUROC of anomaly scores');
    let area = 0;
    for (let k = 1; k < result.roc.fpr.length; k++) {
      area += ((result.roc.fpr[k] - result.roc.fpr[k - 1]) * (result.roc.tpr[k] + result.roc.tpr[k - 1])) / 2;
    }
    expectClose([area], [result.auroc], 1e-12, 'area under the ROC curve');
  });

  it("the tests' own definitional AUROC and AP (test/fixtures/ranking.ts) reproduce sklearn, so other tests may use them", () => {
    for (const e of golden.evaluate) {
      expectClose([pairwiseAuroc(e.normality, e.anomalous)], [e.auroc], 1e-12, `${e.name} AUROC`);
      expectClose([definitionAveragePrecision(e.normality, e.anomalous)], [e.averagePrecision], 1e-12, `${e.name} AP`);
    }
    const ties = golden.cases.find((c) => c.name === 'heavy-ties')!;
    // These cases rank positives by a higher score: as normality, that is the anomalies (positives) ranked last.
    const negated = ties.scores.map((v) => -v);
    expectClose([definitionAveragePrecision(negated, ties.positive)], [ties.averagePrecision], 1e-12, 'heavy ties AP');
    expectClose([pairwiseAuroc(ties.scores, ties.positive.map((p) => !p))], [ties.auroc], 1e-12, 'heavy ties AUROC');
  });

  it('a perfect detector scores 1', () => {
    const result = evaluateScores({ normality: new Float64Array([5, 4, -10, -12]), anomalous: [false, false, true, true] });
    expect(result.auroc).toBe(1);
    expect(result.averagePrecision).toBe(1);
  });

  it('needs both normal and anomalous test images', () => {
    expect(() => evaluateScores({ normality: new Float64Array([1, 2]), anomalous: [false, false] })).toThrow(/all 2 test images are normal/);
    expect(() => evaluateScores({ normality: new Float64Array([1, 2]), anomalous: [true, true] })).toThrow(/all 2 test images are anomalous/);
    expect(() => evaluateScores({ normality: new Float64Array([1]), anomalous: [true, false] })).toThrow(/1 normality scores but 2 anomaly labels/);
  });
});

describe('summarizeCases and formatTable', () => {
  const rows = [
    { caseId: 'unimodal/T-shirt', metrics: { pretrained: 0.9, finetuned: 0.8, combined: 0.95 } },
    { caseId: 'unimodal/Trouser', metrics: { pretrained: 0.7, finetuned: 0.6, combined: 0.75 } },
    { caseId: 'unimodal/Bag', metrics: { combined: 0.5, pretrained: 0.5, finetuned: 1 } },
  ];

  it('keeps per-case rows and adds the column means', () => {
    const summary = summarizeCases(rows);
    expect(summary.columns).toEqual(['pretrained', 'finetuned', 'combined']);
    expect(summary.rows.map((r) => r.caseId)).toEqual(['unimodal/T-shirt', 'unimodal/Trouser', 'unimodal/Bag']);
    const mean = summary.mean;
    expectClose([mean.pretrained, mean.finetuned, mean.combined], [0.7, 0.8, 0.7333333333333333], 1e-15, 'column means');
  });

  it('formats a fixed-width table with the mean last', () => {
    const text = formatTable(summarizeCases(rows));
    expect(text).toBe(
      [
        'case              pretrained  finetuned  combined',
        '-------------------------------------------------',
        'unimodal/T-shirt      0.9000     0.8000    0.9500',
        'unimodal/Trouser      0.7000     0.6000    0.7500',
        'unimodal/Bag          0.5000     1.0000    0.5000',
        '-------------------------------------------------',
        'mean                  0.7000     0.8000    0.7333',
        '',
      ].join('\n'),
    );
    const percent = formatTable(summarizeCases(rows), { percent: true, caseHeader: 'class' });
    expect(percent.split('\n')[0]).toBe('class             pretrained  finetuned  combined');
    expect(percent.split('\n')[6]).toBe('mean                    70.0       80.0      73.3');
  });

  it('rejects inconsistent or empty input', () => {
    expect(() => summarizeCases([])).toThrow(/no cases/);
    expect(() => summarizeCases([rows[0], { caseId: 'x', metrics: { pretrained: 1, finetuned: 1 } }])).toThrow(/case "x" lacks metric "combined"/);
    expect(() => summarizeCases([rows[0], { caseId: 'x', metrics: { ...rows[0].metrics, other: 1 } }])).toThrow(/has metric "other"/);
    expect(() => summarizeCases([rows[0], rows[0]])).toThrow(/appears more than once/);
    expect(() => summarizeCases([{ caseId: 'y', metrics: { a: NaN } }])).toThrow(/metric "a" is NaN/);
  });
});
