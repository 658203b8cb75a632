// A feature combiner for Transformaly: the weighted sum of the feature spaces' normality scores,
// sum_s weight_s * score_s, with one positive weight per space (1 unless the options say otherwise).
import { definePlugin, float64Entry, pluginPackage, stateArray, stateMeta, type FeatureCombiner, type JsonSchema, type OnnxExportContext, type StageState } from '@transformaly/core';

export interface WeightedSumOptions {
  /** The weight of each feature space's score; a space left out weighs 1 (a pipeline without a distiller has no finetuned). */
  weights?: { pretrained?: number; finetuned?: number };
}

const weight = (space: string) => ({ type: 'number', exclusiveMinimum: 0, default: 1, description: `weight of the ${space} space's score` });

export const optionsSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    weights: { type: 'object', additionalProperties: false, properties: { pretrained: weight('pre-trained'), finetuned: weight('fine-tuned') } },
  },
};

const KIND = 'weighted-sum';
/** The layout of the exported state: raise it when the layout changes, and keep reading the older ones if you can. */
const STATE_VERSION = 1;

interface Model {
  /** The spaces fitted on, sorted: the sum runs in this order, whatever the order of a record's keys. */
  spaces: string[];
  weights: Float64Array;
}

export class WeightedSumCombiner implements FeatureCombiner {
  readonly name = KIND;
  private readonly weights: Record<string, number>;
  private model: Model | undefined;

  constructor(options: WeightedSumOptions = {}) {
    this.weights = { ...options.weights };
    // The config's options are checked against optionsSchema; a caller that builds the class in code is checked here.
    for (const [space, w] of Object.entries(this.weights)) {
      if (!(typeof w === 'number' && w > 0 && Number.isFinite(w))) throw new RangeError(`WeightedSumCombiner: options.weights.${space} must be a positive number, got ${w}`);
    }
  }

  fit(trainScores: Record<string, Float64Array>): void {
    const spaces = Object.keys(trainScores).sort();
    if (spaces.length === 0) throw new Error('WeightedSumCombiner.fit: no feature space to combine');
    this.checkScores(trainScores, 'fit');
    this.model = { spaces, weights: Float64Array.from(spaces, (space) => this.weights[space] ?? 1) };
  }

  combine(scores: Record<string, Float64Array>): Float64Array {
    const { spaces, weights } = this.fitted('combine');
    const given = Object.keys(scores).sort();
    if (given.join() !== spaces.join()) throw new Error(`WeightedSumCombiner.combine: got the spaces ${given.join(', ')}, fitted on ${spaces.join(', ')}`);
    const n = this.checkScores(scores, 'combine');
    const out = new Float64Array(n);
    spaces.forEach((space, s) => {
      const column = scores[space];
      for (let i = 0; i < n; i++) out[i] += weights[s] * column[i];
    });
    return out;
  }

  /** `combine` as ONNX nodes, for `transformaly export`: the weights are constants of the graph. */
  exportOnnx(ctx: OnnxExportContext, scores: Record<string, string>): string {
    const { spaces, weights } = this.fitted('exportOnnx');
    const given = Object.keys(scores).sort();
    if (given.join() !== spaces.join()) throw new Error(`WeightedSumCombiner.exportOnnx: got the spaces ${given.join(', ')}, fitted on ${spaces.join(', ')}`);
    const terms = spaces.map((space, s) => ctx.graph.op('Mul', [scores[space], ctx.weight(`${space}.weight`, { dims: [], data: Float64Array.of(weights[s]) })]));
    return terms.slice(1).reduce((sum, term) => ctx.graph.op('Add', [sum, term]), terms[0]);
  }

  exportState(): StageState {
    const { spaces, weights } = this.fitted('exportState');
    return { meta: { kind: KIND, version: STATE_VERSION, spaces }, arrays: { weights: float64Entry(weights, [weights.length]) } };
  }

  importState(state: StageState): void {
    const what = 'WeightedSumCombiner.importState';
    const meta = stateMeta(state, what, KIND, STATE_VERSION);
    const spaces = meta.spaces;
    if (!Array.isArray(spaces) || spaces.length === 0 || !spaces.every((s): s is string => typeof s === 'string')) {
      throw new TypeError(`${what}: meta.spaces must be a list of feature space names, got ${JSON.stringify(spaces)}`);
    }
    const weights = stateArray(state, 'weights', [spaces.length], what);
    const bad = weights.findIndex((w) => !(w > 0));
    if (bad >= 0) throw new RangeError(`${what}: the weight of ${spaces[bad]} is ${weights[bad]}, not positive`);
    const sorted = spaces.map((space, i) => ({ space, weight: weights[i] })).sort((a, b) => (a.space < b.space ? -1 : 1));
    this.model = { spaces: sorted.map((s) => s.space), weights: Float64Array.from(sorted, (s) => s.weight) };
  }

  /** Every space's scores are a Float64Array, all of one length; returns that length. */
  private checkScores(scores: Record<string, Float64Array>, method: string): number {
    const lengths = new Set<number>();
    for (const [space, column] of Object.entries(scores)) {
      if (!(column instanceof Float64Array)) throw new TypeError(`WeightedSumCombiner.${method}: the ${space} scores must be a Float64Array`);
      lengths.add(column.length);
    }
    if (lengths.size > 1) throw new RangeError(`WeightedSumCombiner.${method}: the spaces hold different numbers of scores (${[...lengths].join(', ')})`);
    return [...lengths][0] ?? 0;
  }

  private fitted(method: string): Model {
    if (!this.model) throw new Error(`WeightedSumCombiner.${method}: not fitted (call fit or importState first)`);
    return this.model;
  }
}

// Name, version and aliases come from this package's package.json, so they are written once.
const { name, version, aliases } = pluginPackage(import.meta.url);

export const plugin = definePlugin({
  name,
  version,
  aliases,
  description: "the weighted sum of the feature spaces' normality scores",
  stages: {
    combiner: {
      optionsSchema,
      // A new instance for every detector.
      create: (options: WeightedSumOptions) => new WeightedSumCombiner(options),
    },
  },
});

export default plugin;
