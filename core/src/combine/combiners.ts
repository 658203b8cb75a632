import type { FeatureCombiner, OnnxExportContext, StageState } from '../types.js';

/** Space names in a fixed order, so that sums do not depend on the order of an object's keys. */
function spaceNames(scores: Record<string, Float64Array>, what: string, combiner: string): string[] {
  const names = Object.keys(scores).sort();
  if (names.length === 0) throw new Error(`${combiner} combiner: ${what} has no feature spaces`);
  let length = -1;
  for (const name of names) {
    const s = scores[name];
    if (!(s instanceof Float64Array)) throw new Error(`${combiner} combiner: ${what} scores of space "${name}" must be a Float64Array`);
    if (length === -1) length = s.length;
    else if (s.length !== length) {
      throw new Error(`${combiner} combiner: ${what} scores of space "${names[0]}" have ${length} images but those of "${name}" have ${s.length}`);
    }
  }
  return names;
}

function checkSameSpaces(fitted: string[], given: string[], combiner: string): void {
  const missing = fitted.filter((n) => !given.includes(n));
  const extra = given.filter((n) => !fitted.includes(n));
  if (missing.length > 0 || extra.length > 0) {
    const parts = [];
    if (missing.length > 0) parts.push(`missing ${missing.map((n) => `"${n}"`).join(', ')}`);
    if (extra.length > 0) parts.push(`unexpected ${extra.map((n) => `"${n}"`).join(', ')}`);
    throw new Error(
      `${combiner} combiner: fitted on spaces [${fitted.join(', ')}] but given [${given.join(', ')}] (${parts.join('; ')})`,
    );
  }
}

function readSpaces(state: StageState, combiner: string): string[] {
  if (state.meta.combiner !== combiner) {
    throw new Error(`${combiner} combiner: state was exported by combiner ${JSON.stringify(state.meta.combiner ?? null)}, not "${combiner}"`);
  }
  const spaces = state.meta.spaces;
  if (!Array.isArray(spaces) || spaces.length === 0 || !spaces.every((s) => typeof s === 'string')) {
    throw new Error(`${combiner} combiner: state meta.spaces must be a non-empty array of space names`);
  }
  const names = spaces as string[];
  if (new Set(names).size !== names.length) throw new Error(`${combiner} combiner: state meta.spaces has duplicate names`);
  return [...names].sort();
}

/** The paper's combination: the sum of the per-space normality scores (log-likelihoods). */
export class SumCombiner implements FeatureCombiner {
  readonly name = 'sum';
  #spaces: string[] | undefined;

  fit(trainScores: Record<string, Float64Array>): void {
    this.#spaces = spaceNames(trainScores, 'training', this.name);
  }

  combine(scores: Record<string, Float64Array>): Float64Array {
    const spaces = this.#fitted();
    const given = spaceNames(scores, 'input', this.name);
    checkSameSpaces(spaces, given, this.name);
    const out = new Float64Array(scores[spaces[0]].length);
    for (const name of spaces) {
      const s = scores[name];
      for (let i = 0; i < out.length; i++) out[i] += s[i];
    }
    return out;
  }

  /** The same sum, in the same (sorted) order of the spaces. */
  exportOnnx(ctx: OnnxExportContext, scores: Record<string, string>): string {
    const spaces = this.#fitted();
    checkSameSpaces(spaces, Object.keys(scores).sort(), this.name);
    return spaces.slice(1).reduce((sum, name) => ctx.graph.op('Add', [sum, scores[name]]), scores[spaces[0]]);
  }

  exportState(): StageState {
    return { meta: { combiner: this.name, spaces: [...this.#fitted()] }, arrays: {} };
  }

  importState(state: StageState): void {
    this.#spaces = readSpaces(state, this.name);
  }

  #fitted(): string[] {
    if (!this.#spaces) throw new Error('sum combiner: not fitted; call fit() or importState() first');
    return this.#spaces;
  }
}

/**
 * Puts the spaces on a common scale before summing: each space's scores are standardised by the mean and
 * population standard deviation of its training scores, so that a space with a wide log-likelihood range does not
 * drown the others.
 */
export class ZScoreCombiner implements FeatureCombiner {
  readonly name = 'zscore';
  #fit: { spaces: string[]; mean: Float64Array; std: Float64Array } | undefined;

  fit(trainScores: Record<string, Float64Array>): void {
    const spaces = spaceNames(trainScores, 'training', this.name);
    const n = trainScores[spaces[0]].length;
    if (n === 0) throw new Error('zscore combiner: no training scores; the mean and standard deviation need at least one image');
    const mean = new Float64Array(spaces.length);
    const std = new Float64Array(spaces.length);
    spaces.forEach((name, k) => {
      const s = trainScores[name];
      let sum = 0;
      for (let i = 0; i < n; i++) {
        if (!Number.isFinite(s[i])) throw new Error(`zscore combiner: training score ${i} of space "${name}" is ${s[i]}`);
        sum += s[i];
      }
      const m = sum / n;
      // Two passes: the variance from centred values does not cancel catastrophically for large log-likelihoods.
      let ss = 0;
      for (let i = 0; i < n; i++) ss += (s[i] - m) ** 2;
      const sd = Math.sqrt(ss / n);
      if (!(sd > 0)) {
        throw new Error(`zscore combiner: the training scores of space "${name}" all equal ${m}; a zero standard deviation cannot standardise them`);
      }
      mean[k] = m;
      std[k] = sd;
    });
    this.#fit = { spaces, mean, std };
  }

  combine(scores: Record<string, Float64Array>): Float64Array {
    const { spaces, mean, std } = this.#fitted();
    checkSameSpaces(spaces, spaceNames(scores, 'input', this.name), this.name);
    const out = new Float64Array(scores[spaces[0]].length);
    spaces.forEach((name, k) => {
      const s = scores[name];
      const m = mean[k];
      const sd = std[k];
      for (let i = 0; i < out.length; i++) out[i] += (s[i] - m) / sd;
    });
    return out;
  }

  /** (s - mean) / std per space, summed in the same (sorted) order, in float64. */
  exportOnnx(ctx: OnnxExportContext, scores: Record<string, string>): string {
    const { spaces, mean, std } = this.#fitted();
    checkSameSpaces(spaces, Object.keys(scores).sort(), this.name);
    const g = ctx.graph;
    const terms = spaces.map((name, k) =>
      g.op('Div', [g.op('Sub', [scores[name], ctx.weight(`${name}.mean`, { dims: [], data: Float64Array.of(mean[k]) })]), ctx.weight(`${name}.std`, { dims: [], data: Float64Array.of(std[k]) })]),
    );
    return terms.slice(1).reduce((sum, term) => g.op('Add', [sum, term]), terms[0]);
  }

  exportState(): StageState {
    const { spaces, mean, std } = this.#fitted();
    return {
      meta: { combiner: this.name, spaces: [...spaces] },
      arrays: { mean: { dims: [spaces.length], data: mean.slice() }, std: { dims: [spaces.length], data: std.slice() } },
    };
  }

  importState(state: StageState): void {
    const spaces = readSpaces(state, this.name);
    const order = (state.meta.spaces as string[]).map((n) => spaces.indexOf(n));
    const vector = (key: 'mean' | 'std'): Float64Array => {
      const entry = state.arrays[key];
      if (!entry || !(entry.data instanceof Float64Array) || entry.data.length !== spaces.length) {
        throw new Error(`zscore combiner: state array "${key}" must be float64 with one value per space (${spaces.length})`);
      }
      // Stored in meta.spaces order; kept internally in sorted order.
      const out = new Float64Array(spaces.length);
      order.forEach((to, from) => {
        out[to] = entry.data[from];
      });
      return out;
    };
    const mean = vector('mean');
    const std = vector('std');
    std.forEach((sd, k) => {
      if (!(sd > 0) || !Number.isFinite(sd)) throw new Error(`zscore combiner: state std of space "${spaces[k]}" is ${sd}, expected a positive number`);
    });
    mean.forEach((m, k) => {
      if (!Number.isFinite(m)) throw new Error(`zscore combiner: state mean of space "${spaces[k]}" is ${m}, expected a finite number`);
    });
    this.#fit = { spaces, mean, std };
  }

  #fitted(): { spaces: string[]; mean: Float64Array; std: Float64Array } {
    if (!this.#fit) throw new Error('zscore combiner: not fitted; call fit() or importState() first');
    return this.#fit;
  }
}
