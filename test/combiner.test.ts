import { describe, expect, it } from 'vitest';
import { SumCombiner, ZScoreCombiner, sumCombinerPlugin, zscoreCombinerPlugin, type StageState } from '@transformaly/core';
import { combinerChecks, registerChecks } from '@transformaly/testing';
import { expectClose } from './fixtures/close.js';

const f64 = (...v: number[]) => Float64Array.from(v);

describe('SumCombiner', () => {
  it('sums the spaces exactly, whatever the key order', () => {
    const c = new SumCombiner();
    c.fit({ pretrained: f64(1, 2), finetuned: f64(3, 4) });
    const a = f64(-1234.5, 0.1, 7);
    const b = f64(-17.25, 0.2, -7);
    expect(Array.from(c.combine({ pretrained: a, finetuned: b }))).toEqual([a[0] + b[0], a[1] + b[1], a[2] + b[2]]);
    expect(Array.from(c.combine({ finetuned: b, pretrained: a }))).toEqual([a[0] + b[0], a[1] + b[1], a[2] + b[2]]);
    expect(c.name).toBe('sum');
  });

  it('rejects other spaces than those it was fitted on', () => {
    const c = new SumCombiner();
    c.fit({ pretrained: f64(1), finetuned: f64(2) });
    expect(() => c.combine({ pretrained: f64(1) })).toThrow(/fitted on spaces \[finetuned, pretrained\].*missing "finetuned"/);
    expect(() => c.combine({ pretrained: f64(1), finetuned: f64(1), knn: f64(1) })).toThrow(/unexpected "knn"/);
  });

  it('rejects unequal lengths and use before fit', () => {
    expect(() => new SumCombiner().combine({ a: f64(1) })).toThrow(/not fitted/);
    const c = new SumCombiner();
    expect(() => c.fit({})).toThrow(/no feature spaces/);
    c.fit({ a: f64(1), b: f64(2) });
    expect(() => c.combine({ a: f64(1, 2), b: f64(1) })).toThrow(/"a" have 2 images but those of "b" have 1/);
  });

});

describe('ZScoreCombiner', () => {
  // Space a: [1, 2, 3, 4] -> mean 2.5, population variance 1.25. Space b: [10, 10, 20, 40] -> mean 20, variance 150.
  const train = { a: f64(1, 2, 3, 4), b: f64(10, 10, 20, 40) };

  it('standardises each space by its training mean and population std, then sums', () => {
    const c = new ZScoreCombiner();
    c.fit(train);
    const out = c.combine({ a: f64(2.5, 5), b: f64(20, 5) });
    expect(out[0]).toBe(0);
    // (5 - 2.5) / sqrt(1.25) + (5 - 20) / sqrt(150) = 2.2360679775 - 1.2247448714, computed by hand.
    expectClose(out, [0, 1.0113231061], 1e-10, 'standardised sum');
  });

  it('exports mean and std as float64 and restores them, in any stored space order', () => {
    const c = new ZScoreCombiner();
    c.fit(train);
    const state = c.exportState();
    expect(state.meta).toEqual({ combiner: 'zscore', spaces: ['a', 'b'] });
    expect(state.arrays.mean.data).toBeInstanceOf(Float64Array);
    expect(Array.from(state.arrays.mean.data)).toEqual([2.5, 20]);
    expect(Array.from(state.arrays.std.data)).toEqual([Math.sqrt(1.25), Math.sqrt(150)]);
    const y = { a: f64(0, 1, 7), b: f64(3, 50, -2) };
    const restored = new ZScoreCombiner();
    restored.importState(structuredClone(state));
    expect(Array.from(restored.combine(y))).toEqual(Array.from(c.combine(y)));
    const reordered: StageState = {
      meta: { combiner: 'zscore', spaces: ['b', 'a'] },
      arrays: { mean: { dims: [2], data: f64(20, 2.5) }, std: { dims: [2], data: f64(Math.sqrt(150), Math.sqrt(1.25)) } },
    };
    const fromReordered = new ZScoreCombiner();
    fromReordered.importState(reordered);
    expect(Array.from(fromReordered.combine(y))).toEqual(Array.from(c.combine(y)));
  });

  it('refuses a space whose training scores have zero spread, naming it', () => {
    expect(() => new ZScoreCombiner().fit({ a: f64(1, 2), finetuned: f64(-3, -3) })).toThrow(/space "finetuned" all equal -3/);
    expect(() => new ZScoreCombiner().fit({ a: f64() })).toThrow(/no training scores/);
    expect(() => new ZScoreCombiner().fit({ a: f64(1, NaN) })).toThrow(/training score 1 of space "a" is NaN/);
  });

  it('rejects mismatched spaces and foreign or broken state', () => {
    const c = new ZScoreCombiner();
    c.fit(train);
    expect(() => c.combine({ a: f64(1), c: f64(1) })).toThrow(/missing "b"; unexpected "c"/);
    const sum = new SumCombiner();
    sum.fit(train);
    expect(() => new ZScoreCombiner().importState(sum.exportState())).toThrow(/exported by combiner "sum"/);
    const state = c.exportState();
    state.arrays.std = { dims: [2], data: f64(1, 0) };
    expect(() => new ZScoreCombiner().importState(state)).toThrow(/std of space "b" is 0/);
    delete (state.arrays as Record<string, unknown>).mean;
    expect(() => new ZScoreCombiner().importState(state)).toThrow(/state array "mean"/);
  });
});

describe('combiner plugins', () => {
  for (const plugin of [sumCombinerPlugin, zscoreCombinerPlugin]) {
    it(`${plugin.name}: takes no options and says what rule it applies`, () => {
      expect(plugin.stages?.combiner?.optionsSchema).toEqual({ type: 'object', properties: {}, additionalProperties: false });
      // What `transformaly plugins` shows: the rule each combiner applies.
      expect(plugin.description).toMatch(plugin.name === 'sum' ? /^Feature combiner: sum of the per-space normality scores/ : /^Feature combiner: per-space scores standardised by their training mean and std, then summed/);
    });
  }
});

// The FeatureCombiner contract (state round trip through a saved file, monotone in every space, refusals, a fresh
// instance per detector), through the core's binding of each built-in as a pipeline makes it.
for (const plugin of [sumCombinerPlugin, zscoreCombinerPlugin]) {
  describe(`conformance: ${plugin.name}`, () => registerChecks(combinerChecks(plugin), it));
}
