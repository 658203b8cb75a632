// scores.csv: one writer, one reader and one merge for run, eval and the report, with one rule for numbers.
import { describe, expect, it } from 'vitest';
import { caseScoresCsv, evaluateScoresCsv, mergeScoresCsv, readScoresCsv, SCORES_CSV_HEADER, type DetectorScores } from '@transformaly/core';

const row = (caseId: string, path: string, anomalous: 0 | 1, pretrained: string, finetuned: string, combined: string, flagged: 0 | 1 = 0) =>
  `${caseId},${path},x,${anomalous},${pretrained},${finetuned},${combined},${flagged}`;

describe('scores.csv', () => {
  it('writes a case as the reader reads it back, quoting ids with commas and quotes', () => {
    const scores: DetectorScores = {
      ids: ['a,1.png', 'b"2.png', 'c.png'],
      pretrained: Float64Array.of(-1.5, -20, 0.25),
      finetuned: Float64Array.of(-3, -4, 1e-300),
      combined: Float64Array.of(-4.5, -24, 0.25),
      anomalous: [false, true, false],
      skipped: [],
    };
    const text = caseScoresCsv('unimodal/T-shirt/top', scores, [false, true, false], new Map([['a,1.png', 'T-shirt/top']]));
    expect(text.split('\n')[0]).toBe(SCORES_CSV_HEADER);
    expect(text.split('\n')[1]).toBe('unimodal/T-shirt/top,"a,1.png",T-shirt/top,0,-1.5,-3,-4.5,0');
    expect(text.split('\n')[2]).toBe('unimodal/T-shirt/top,"b""2.png",,1,-20,-4,-24,1');
    const back = readScoresCsv(text).get('unimodal/T-shirt/top')!;
    expect(back.anomalous).toEqual([false, true, false]);
    expect(back.flagged).toEqual([false, true, false]);
    expect(Array.from(back.spaces.finetuned!)).toEqual([-3, -4, 1e-300]);
    expect(Array.from(back.spaces.combined!)).toEqual([-4.5, -24, 0.25]);
  });

  it('accepts ±Infinity in every reader (eval included), and refuses NaN and anything String(number) would not write', () => {
    // Two normal images (-1, -2) and two anomalous ones (-Infinity, -3): every normal one outranks every anomalous one.
    const text = [
      SCORES_CSV_HEADER,
      row('c', 'n1', 0, '-1', '', '-1'),
      row('c', 'n2', 0, '-2', '', '-2'),
      row('c', 'a1', 1, '-Infinity', '', '-Infinity', 1),
      row('c', 'a2', 1, '-3', '', '-3', 1),
    ].join('\n');
    expect(Array.from(readScoresCsv(text).get('c')!.spaces.combined!)).toEqual([-1, -2, -Infinity, -3]);
    const evaluation = evaluateScoresCsv(text);
    expect(evaluation.cases).toEqual([{ caseId: 'c', metrics: { pretrained: { auroc: 1, averagePrecision: 1 }, combined: { auroc: 1, averagePrecision: 1 } } }]);
    // One swap (a2 above n2): 3 of the 4 normal/anomalous pairs ranked right.
    const swapped = text.replace(row('c', 'a2', 1, '-3', '', '-3', 1), row('c', 'a2', 1, '-1.5', '', '-1.5', 1));
    expect(evaluateScoresCsv(swapped).cases[0].metrics.combined.auroc).toBe(0.75);
    for (const bad of ['NaN', 'infinity', ' 1', '0x10', '1,5', '1e', '--1', 'Infinity1']) {
      const line = row('c', 'n1', 0, bad.includes(',') ? `"${bad}"` : bad, '', '-1');
      const damaged = text.replace(row('c', 'n1', 0, '-1', '', '-1'), line);
      expect(() => evaluateScoresCsv(damaged, 'run/scores.csv'), bad).toThrow(`run/scores.csv: line 2: "pretrained" must be a number, found "${bad}"`);
      expect(() => readScoresCsv(damaged, 'run/scores.csv'), bad).toThrow(`run/scores.csv: line 2: "pretrained" must be a number, found "${bad}"`);
    }
  });

  it('merges cases under one header, in the order given, and refuses a part with another header', () => {
    const a = `${SCORES_CSV_HEADER}\n${row('a', 'p', 0, '1', '', '1')}\n`;
    const b = `${SCORES_CSV_HEADER}\n${row('b', 'q', 1, '2', '', '2')}`;
    expect(mergeScoresCsv([{ text: a, file: 'a.csv' }, { text: b, file: 'b.csv' }])).toBe(
      `${SCORES_CSV_HEADER}\n${row('a', 'p', 0, '1', '', '1')}\n${row('b', 'q', 1, '2', '', '2')}\n`,
    );
    expect(() => mergeScoresCsv([{ text: 'case,path\n', file: 'cases/x/scores.csv' }])).toThrow(
      `cases/x/scores.csv: expected the header "${SCORES_CSV_HEADER}", found "case,path"`,
    );
  });
});
