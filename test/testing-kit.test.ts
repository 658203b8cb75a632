// @transformaly/testing against stages broken on purpose: for every rule of a contract, a stage that breaks that rule
// (and a correct reference that keeps them all) shows that the kit catches it and names it.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  BUILTIN_PLUGINS,
  assertCols,
  assertUsableMatrix,
  castGraph,
  columnMeans,
  type Backbone,
  type BackboneOutput,
  type DensityScorer,
  type FeatureCombiner,
  type ImageItem,
  type ImageSource,
  type InferenceSession,
  type Matrix,
  type OnnxExportContext,
  type RgbImage,
  type Runtime,
  type Split,
  type StageState,
  type Tensor,
  type TransformalyPlugin,
} from '@transformaly/core';
import { randomVit } from '@transformaly/backbone-vit';
import { OnnxRuntime } from '@transformaly/runtime-onnx';
import {
  checkBackbone,
  checkCombiner,
  checkDensityScorer,
  checkImageSource,
  checkRuntime,
  ConformanceError,
  disposeKit,
  densityScorerChecks,
  imageSourceChecks,
} from '@transformaly/testing';

const runtime = new OnnxRuntime({ threads: 1 });
afterAll(async () => {
  await runtime.dispose();
  await disposeKit();
});

/** The ids of the rules a check run reports broken (empty when all hold). */
async function broken(run: Promise<string[]>): Promise<{ ids: string[]; message: string }> {
  try {
    await run;
    return { ids: [], message: '' };
  } catch (error) {
    if (!(error instanceof ConformanceError)) throw error;
    return { ids: error.failures.map((f) => f.id), message: error.message };
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Density scorers: minus the distance to the training mean, written to keep every rule; each flaw breaks one.
// ---------------------------------------------------------------------------------------------------------------

type ScorerFlaw =
  | 'none'
  | 'short-output'
  | 'inverted'
  | 'scores-unfitted'
  | 'accepts-nan'
  | 'ignores-width'
  | 'rejects-float32'
  | 'mutates-input'
  | 'jitter'
  | 'lossy-state'
  | 'aliased-state'
  | 'accepts-any-state'
  | 'export-mismatch'
  | 'export-nonstandard';

class MeanScorer implements DensityScorer {
  readonly name = 'mean';
  private mean: Float64Array | undefined;
  constructor(private readonly flaw: ScorerFlaw = 'none') {}

  fit(X: Matrix): void {
    if (this.flaw === 'rejects-float32' && !(X.data instanceof Float64Array)) throw new TypeError('only float64 features');
    if (this.flaw !== 'accepts-nan') assertUsableMatrix(X, 'MeanScorer.fit: X', 2);
    this.mean = columnMeans(X);
    if (this.flaw === 'mutates-input') for (let i = 0; i < X.data.length; i++) X.data[i] -= this.mean[i % X.cols];
  }

  scoreSamples(Y: Matrix): Float64Array {
    if (!this.mean && this.flaw !== 'scores-unfitted') throw new Error('MeanScorer: not fitted');
    const mean = this.mean ?? new Float64Array(Y.cols);
    if (this.flaw !== 'accepts-nan') assertUsableMatrix(Y, 'MeanScorer.scoreSamples: Y', 0);
    if (this.flaw !== 'ignores-width') assertCols(Y, mean.length, 'MeanScorer.scoreSamples: Y');
    const out = new Float64Array(Y.rows);
    for (let i = 0; i < Y.rows; i++) {
      let s = 0;
      for (let j = 0; j < Math.min(Y.cols, mean.length); j++) s += (Y.data[i * Y.cols + j] - mean[j]) ** 2;
      out[i] = (this.flaw === 'inverted' ? 1 : -1) * Math.sqrt(s) + (this.flaw === 'jitter' ? Math.random() * 1e-9 : 0);
    }
    return this.flaw === 'short-output' ? out.subarray(1) : out;
  }

  exportState(): StageState {
    if (!this.mean) {
      if (this.flaw === 'scores-unfitted') return { meta: { kind: 'mean' }, arrays: {} };
      throw new Error('MeanScorer: not fitted');
    }
    const data = this.flaw === 'aliased-state' ? this.mean : this.flaw === 'lossy-state' ? Float32Array.from(this.mean) : this.mean.slice();
    return { meta: { kind: 'mean' }, arrays: { mean: { dims: [this.mean.length], data } } };
  }

  importState(state: StageState): void {
    if (this.flaw === 'accepts-any-state') {
      this.mean = Float64Array.from(state.arrays.mean?.data ?? []);
      return;
    }
    if (state.meta.kind !== 'mean' || !state.arrays.mean) throw new Error('MeanScorer.importState: not a mean state');
    this.mean = Float64Array.from(state.arrays.mean.data);
  }

  /** -||x - mean|| in float64; the flawed ones forget the square root, or use a contrib operator. */
  exportOnnx(ctx: OnnxExportContext, features: string): string {
    const g = ctx.graph;
    const centred = g.op('Sub', [castGraph(ctx, features, 'float64'), ctx.weight('mean', { dims: [this.mean!.length], data: this.mean!.slice() })]);
    const squares = g.op('ReduceSumSquare', [centred], { axes: [1], keepdims: 0 });
    if (this.flaw === 'export-nonstandard') return g.op('Gelu', [squares], {}, { domain: 'com.microsoft' });
    return g.op('Neg', [this.flaw === 'export-mismatch' ? squares : g.op('Sqrt', [squares])]);
  }
}

const scorerPlugin = (flaw: ScorerFlaw): TransformalyPlugin => ({
  name: `mean-${flaw}`,
  version: '1.0.0',
  stages: { scorer: { create: () => new MeanScorer(flaw) } },
});

describe('checkDensityScorer', () => {
  it('passes a scorer that keeps every rule, given as a plugin or as a factory', async () => {
    const rules = densityScorerChecks(scorerPlugin('none')).map((c) => c.id);
    expect(await checkDensityScorer(scorerPlugin('none'))).toEqual(rules);
    expect(await checkDensityScorer(() => new MeanScorer())).toEqual(rules);
  });

  it.each([
    ['short-output', 'fit-and-score', /fit-and-score: after fit, scoreSamples returns a Float64Array of one finite score per row: 11 scores for 12 rows/],
    ['inverted', 'normality-orientation', /normality-orientation: .*not above the highest score of far outliers/],
    ['scores-unfitted', 'unfitted-use', /unfitted-use: .*scoreSamples before fit was accepted \(returned a Float64Array of 12 values\); it must throw/],
    ['accepts-nan', 'refuses-non-finite', /refuses-non-finite: .*fit on rows holding NaN was accepted/],
    ['ignores-width', 'refuses-wrong-shape', /refuses-wrong-shape: .*scoreSamples on 5 columns after fitting on 4 was accepted/],
    ['rejects-float32', 'float32-input', /float32-input: fit and scoreSamples accept float32 features: threw only float64 features/],
    ['mutates-input', 'inputs-unchanged', /inputs-unchanged: .*fit changed its input at flat index \d+/],
    ['jitter', 'deterministic', /deterministic: .*two instances fitted on the same rows score row 0 differently/],
    ['lossy-state', 'state-round-trip', /state-round-trip: .*the restored instance scores row \d+ differently/],
    ['aliased-state', 'state-not-aliased', /state-not-aliased: .*zeroing the arrays of an exported state changed the scores of the instance that exported it/],
    ['accepts-any-state', 'foreign-state', /foreign-state: importState refuses a state that is not its own: importState of an empty state was accepted/],
    ['export-mismatch', 'export-onnx', /export-onnx: .*from float32 features, the exported graph scores row 0 as -\d.*, scoreSamples as -\d/],
    ['export-nonstandard', 'export-onnx', /export-onnx: .*exportOnnx used the operator com\.microsoft\.Gelu; only the standard operators \(opset 17\) may be used/],
  ] as const)('catches a scorer whose flaw is %s: rule %s', async (flaw, rule, message) => {
    const { ids, message: text } = await broken(checkDensityScorer(scorerPlugin(flaw)));
    expect(ids).toContain(rule);
    expect(text).toMatch(message);
    expect(text).toMatch(new RegExp(`^plugin "mean-${flaw}" breaks \\d+ of 13 DensityScorer rules:`));
  });

  it('catches a plugin or a factory that hands out one instance twice (fresh-instance)', async () => {
    const shared = new MeanScorer();
    const { ids, message } = await broken(checkDensityScorer({ name: 'shared', version: '1.0.0', stages: { scorer: { create: () => shared } } }));
    expect(ids).toContain('fresh-instance');
    expect(message).toMatch(/fresh-instance: .*breaks the rule "DensityScorer is a new instance for every detector and feature space": the same instance was handed out twice/);
    expect((await broken(checkDensityScorer(() => shared))).ids).toContain('fresh-instance');
  });

  it('names a missing method in every rule it breaks', async () => {
    const { ids, message } = await broken(checkDensityScorer(() => Object.assign(new MeanScorer(), { exportState: undefined }) as unknown as DensityScorer));
    expect(ids).toEqual(densityScorerChecks(scorerPlugin('none')).map((c) => c.id));
    expect(message).toMatch(/breaks the rule "DensityScorer implements fit, scoreSamples, exportState, importState": method exportState\(\) missing on a MeanScorer/);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Combiners: the sum plus a fitted offset (minus the mean training sum), kept in the state.
// ---------------------------------------------------------------------------------------------------------------

type CombinerFlaw = 'none' | 'needs-two-spaces' | 'decreasing' | 'order-dependent' | 'any-spaces' | 'nan-to-zero' | 'lossy-state' | 'export-mismatch';

class OffsetSum implements FeatureCombiner {
  readonly name = 'offset-sum';
  private fitted: { spaces: string[]; offset: number } | undefined;
  constructor(private readonly flaw: CombinerFlaw = 'none') {}

  fit(train: Record<string, Float64Array>): void {
    const spaces = Object.keys(train).sort();
    if (this.flaw === 'needs-two-spaces' && spaces.length < 2) throw new Error('two spaces needed');
    const n = train[spaces[0]].length;
    let total = 0;
    for (const s of spaces) for (const v of train[s]) total += v;
    this.fitted = { spaces, offset: -total / n };
  }

  combine(scores: Record<string, Float64Array>): Float64Array {
    if (!this.fitted) throw new Error('OffsetSum: not fitted');
    const given = Object.keys(scores);
    const spaces = this.flaw === 'any-spaces' || this.flaw === 'order-dependent' ? given : this.fitted.spaces;
    if (this.flaw !== 'any-spaces' && (given.length !== spaces.length || !spaces.every((s) => s in scores))) throw new Error('OffsetSum: other spaces');
    const n = scores[spaces[0]].length;
    if (spaces.some((s) => scores[s].length !== n)) throw new Error('OffsetSum: unequal lengths');
    const out = new Float64Array(n).fill(this.fitted.offset);
    spaces.forEach((s, k) => {
      for (let i = 0; i < n; i++) {
        const v = this.flaw === 'nan-to-zero' && Number.isNaN(scores[s][i]) ? 0 : scores[s][i];
        out[i] += this.flaw === 'order-dependent' ? v * (k + 1) : this.flaw === 'decreasing' ? -v : v;
      }
    });
    return out;
  }

  exportState(): StageState {
    if (!this.fitted) throw new Error('OffsetSum: not fitted');
    const offset = this.flaw === 'lossy-state' ? Float32Array.of(this.fitted.offset) : Float64Array.of(this.fitted.offset);
    return { meta: { kind: 'offset-sum', spaces: this.fitted.spaces }, arrays: { offset: { dims: [1], data: offset } } };
  }

  importState(state: StageState): void {
    if (state.meta.kind !== 'offset-sum') throw new Error('OffsetSum.importState: not an offset-sum state');
    this.fitted = { spaces: [...(state.meta.spaces as string[])], offset: state.arrays.offset.data[0] };
  }

  /** The sum plus the offset; the flawed one forgets the offset. */
  exportOnnx(ctx: OnnxExportContext, scores: Record<string, string>): string {
    const g = ctx.graph;
    const sum = this.fitted!.spaces.map((s) => scores[s]).reduce((a, b) => g.op('Add', [a, b]));
    return this.flaw === 'export-mismatch' ? sum : g.op('Add', [sum, ctx.weight('offset', { dims: [], data: Float64Array.of(this.fitted!.offset) })]);
  }
}

describe('checkCombiner', () => {
  it('passes a combiner that keeps every rule', async () => {
    expect(await checkCombiner(() => new OffsetSum())).toHaveLength(14);
  });

  it.each([
    ['needs-two-spaces', 'single-space', /single-space: .*threw two spaces needed/],
    ['decreasing', 'monotone', /monotone: .*raising the pretrained score of image 3 by 50 moved its combined score from .* to /],
    ['order-dependent', 'key-order', /key-order: .*image 0 combines differently when the spaces come in another order/],
    ['any-spaces', 'mismatched-spaces', /mismatched-spaces: .*combine without the finetuned space was accepted/],
    ['nan-to-zero', 'no-hidden-nan', /no-hidden-nan: .*a NaN finetuned score became the combined score/],
    ['lossy-state', 'state-round-trip', /state-round-trip: .*the restored instance combines image \d+ differently/],
    ['export-mismatch', 'export-onnx', /export-onnx: .*with spaces \[pretrained,finetuned\], the exported graph combines image 0 to .*, combine to /],
  ] as const)('catches a combiner whose flaw is %s: rule %s', async (flaw, rule, message) => {
    const { ids, message: text } = await broken(checkCombiner(() => new OffsetSum(flaw)));
    expect(ids).toContain(rule);
    expect(text).toMatch(message);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Backbones: a real random ViT, seen through a view that breaks one rule.
// ---------------------------------------------------------------------------------------------------------------

type BackboneFlaw = 'none' | 'miscounted-tokens' | 'batch-dependent' | 'drops-unknown-taps';

async function vit(flaw: BackboneFlaw): Promise<Backbone> {
  const inner = await randomVit({ seed: 2, arch: { imageSize: [16, 16], patchSize: 8, width: 16, depth: 2, heads: 2, mlpDim: 32 } }, { runtime });
  const info = flaw === 'miscounted-tokens' ? { ...inner.info, tokens: inner.info.tokens - 1 } : inner.info;
  return {
    info,
    blockWeights: (i) => inner.blockWeights(i),
    dispose: () => inner.dispose(),
    async forward(pixels: Tensor, options?: { taps?: number[] }): Promise<BackboneOutput> {
      const taps = flaw === 'drops-unknown-taps' ? options?.taps?.filter((t) => t < info.depth) : options?.taps;
      const out = await inner.forward(pixels, { taps });
      if (flaw === 'batch-dependent' && out.features.rows > 1) {
        const data = Float32Array.from(out.features.data, (v, k) => v + 1e-2 * out.features.data[k % info.width]);
        return { ...out, features: { ...out.features, data } };
      }
      return out;
    },
  };
}

describe('checkBackbone', () => {
  it('passes a backbone that keeps every rule', async () => {
    expect(await checkBackbone(() => vit('none'))).toHaveLength(8);
  });

  it.each([
    ['miscounted-tokens', 'info', /info: .*tokens is 4, expected 5 \(patches \+ CLS\)/],
    ['batch-dependent', 'batch-independent', /batch-independent: .*image 1 alone and in a batch of 3 differ by/],
    ['drops-unknown-taps', 'refuses-wrong-input', /refuses-wrong-input: .*a tap of block 2 \(the last is 1\) was accepted/],
  ] as const)('catches a backbone whose flaw is %s: rule %s', async (flaw, rule, message) => {
    const { ids, message: text } = await broken(checkBackbone(() => vit(flaw)));
    expect(ids).toContain(rule);
    expect(text).toMatch(message);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Runtimes: onnxruntime, seen through a view whose sessions break one rule.
// ---------------------------------------------------------------------------------------------------------------

type RuntimeFlaw = 'none' | 'off-by-a-bit' | 'ignores-unknown-outputs' | 'runs-after-dispose';

function onnx(flaw: RuntimeFlaw): Runtime {
  const inner = new OnnxRuntime({ threads: 1 });
  return {
    name: 'onnx-view',
    device: inner.device,
    threads: inner.threads,
    canTrain: false,
    dispose: () => inner.dispose(),
    async createSession(model, options): Promise<InferenceSession> {
      const session = await inner.createSession(model, options);
      return {
        inputNames: session.inputNames,
        outputNames: session.outputNames,
        // Left to the runtime's dispose, which releases every session it made.
        dispose: async () => (flaw === 'runs-after-dispose' ? undefined : session.dispose()),
        async run(feeds, outputs) {
          const known = outputs?.filter((o) => session.outputNames.includes(o));
          const out = await session.run(feeds, flaw === 'ignores-unknown-outputs' && known?.length === 0 ? undefined : outputs);
          if (flaw === 'off-by-a-bit') for (const t of Object.values(out)) t.data = t.data.map((v) => v + 1e-3);
          return out;
        },
      };
    },
  };
}

describe('checkRuntime', () => {
  it('passes a runtime that keeps every rule (onnxruntime itself, with its numerics)', async () => {
    expect(await checkRuntime(() => onnx('none'))).toHaveLength(7);
    expect(await checkRuntime(() => new OnnxRuntime({ threads: 1 }))).toHaveLength(7);
  });

  it.each([
    ['off-by-a-bit', 'runs-a-graph', /runs-a-graph: .*outputs differ from the hand-computed values by 0\.001/],
    ['ignores-unknown-outputs', 'refuses-bad-feeds', /refuses-bad-feeds: .*run asking for an unknown output was accepted/],
    ['runs-after-dispose', 'session-dispose', /session-dispose: .*run on a disposed session was accepted/],
  ] as const)('catches a runtime whose flaw is %s: rule %s', async (flaw, rule, message) => {
    const { ids, message: text } = await broken(checkRuntime(() => onnx(flaw)));
    expect(ids).toContain(rule);
    expect(text).toMatch(message);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Image sources: a small set of generated images in memory, listed with one flaw each; and the built-in sources.
// ---------------------------------------------------------------------------------------------------------------

type SourceFlaw = 'none' | 'repeated-class' | 'unknown-label' | 'repeated-id' | 'shuffled' | 'shared-list' | 'out-of-range' | 'short-data' | 'shared-pixels';

function memorySource(flaw: SourceFlaw): ImageSource {
  const image = (seed: number): RgbImage => ({ width: 3, height: 2, data: Float32Array.from({ length: 18 }, (_, k) => ((seed * 7 + k) % 11) / 10) });
  const pixels = new Map<string, RgbImage>();
  const item = (split: Split, label: string, i: number): ImageItem => {
    const id = flaw === 'repeated-id' && i === 1 ? `${split}/0.png` : `${split}/${i}.png`;
    return {
      id,
      label: flaw === 'unknown-label' && split === 'train' && i === 2 ? 'zebra' : label,
      async load() {
        const made = image(i);
        if (flaw === 'out-of-range') made.data[4] = 1.5;
        if (flaw === 'short-data') made.data = made.data.subarray(1);
        if (flaw !== 'shared-pixels') return made;
        if (!pixels.has(id)) pixels.set(id, made);
        return pixels.get(id)!;
      },
    };
  };
  const listings = { train: [0, 1, 2].map((i) => item('train', i < 2 ? 'cat' : 'dog', i)), test: [0, 1, 2, 3].map((i) => item('test', i % 2 ? 'cat' : 'fox', i)) };
  let calls = 0;
  return {
    name: `memory-${flaw}`,
    classes: async () => (flaw === 'repeated-class' ? ['cat', 'dog', 'cat'] : ['cat', 'dog']),
    async items(split) {
      const list = listings[split];
      calls++;
      if (flaw === 'shared-list') return list;
      return flaw === 'shuffled' && calls % 2 === 0 ? [...list].reverse() : [...list];
    },
  };
}

describe('checkImageSource', () => {
  it('passes a source that keeps every rule, and the built-in sources', async () => {
    const rules = imageSourceChecks(() => memorySource('none')).map((c) => c.id);
    expect(rules).toEqual(['classes', 'listing', 'stable-listing', 'listing-copies', 'load', 'load-repeatable']);
    expect(await checkImageSource(() => memorySource('none'))).toEqual(rules);
    const idx = BUILTIN_PLUGINS.get('idx')!;
    expect(await checkImageSource({ plugin: idx, options: { dir: join(import.meta.dirname, '..', 'demo', 'fashion-mnist'), classNames: 'fashion-mnist' } })).toEqual(rules);
  });

  it.each([
    ['repeated-class', 'classes', /classes: .*class "cat" is listed twice/],
    ['unknown-label', 'listing', /listing: .*train item train\/2\.png has label "zebra", which classes\(\) does not list/],
    ['repeated-id', 'listing', /listing: .*train item id train\/0\.png is listed twice/],
    ['shuffled', 'stable-listing', /stable-listing: .*the second items\('train'\) differs from the first at position 0/],
    ['shared-list', 'listing-copies', /listing-copies: .*emptying the list items\('train'\) returned changed the next listing \(0 images, expected 3\)/],
    ['out-of-range', 'load', /load: .*train\/0\.png: value 4 is 1\.5, outside \[0, 1\]/],
    ['short-data', 'load', /load: .*train\/0\.png: 17 values for 3 x 2 RGB \(expected 18\)/],
    ['shared-pixels', 'load-repeatable', /load-repeatable: .*train\/0\.png: two loads returned the same array/],
  ] as const)('catches a source whose flaw is %s: rule %s', async (flaw, rule, message) => {
    const { ids, message: text } = await broken(checkImageSource(() => memorySource(flaw)));
    expect(ids).toContain(rule);
    expect(text).toMatch(message);
    expect(text).toMatch(/^the factory breaks 1 of 6 ImageSource rules:/);
  });

  it('accepts a test label outside the classes: a novel class', async () => {
    // memorySource's test split labels half its images "fox", which classes() does not list.
    expect(await checkImageSource(() => memorySource('none'))).toContain('listing');
  });
});

describe('registerChecks', () => {
  it('registers each rule as a test of node:test too', () => {
    // The built kit (npm test builds before it runs), as a plugin author's node:test suite imports it.
    const file = join(import.meta.dirname, 'fixtures', 'plugins', 'kit-node-test.mjs');
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(
      file,
      `import { test } from 'node:test';\nimport { sumCombinerPlugin } from '@transformaly/core';\nimport { combinerChecks, registerChecks } from '@transformaly/testing';\nregisterChecks(combinerChecks(sumCombinerPlugin), test, 'sum ');\n`,
    );
    const result = spawnSync(process.execPath, ['--test', '--test-reporter=tap', file], { encoding: 'utf8' });
    expect(result.status, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^# pass 14$/m);
    expect(result.stdout).toMatch(/^ok \d+ - sum state-round-trip: a new instance restored from exportState/m);
  });
});
