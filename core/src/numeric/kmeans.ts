import type { Matrix, NumericEngine } from '../types.js';
import { pairwiseSqDist } from './distance.js';
import { selectRows } from './matrix.js';
import type { Rng } from './rng.js';

export interface KmeansPlusPlusResult {
  /** Row indices of the chosen centres, in the order they were picked. */
  indices: Int32Array;
  /** Sum of squared distances of every row to its closest centre. */
  potential: number;
}

/**
 * Greedy k-means++ seeding, as sklearn's `kmeans_plusplus`: the first centre uniformly, then for each next centre
 * `localTrials` (default 2 + floor(ln k)) candidates drawn proportionally to the squared distance to the closest
 * centre so far, keeping the candidate that lowers the potential most. Distances come from engine products.
 */
export async function kmeansPlusPlus(engine: NumericEngine, X: Matrix, k: number, rng: Rng, options: { localTrials?: number } = {}): Promise<KmeansPlusPlusResult> {
  const n = X.rows;
  if (!Number.isInteger(k) || k < 1 || k > n) throw new RangeError(`kmeansPlusPlus: k must be an integer in 1..${n} (the number of rows), got ${k}`);
  const trials = options.localTrials ?? 2 + Math.floor(Math.log(k));
  const indices = new Int32Array(k);
  indices[0] = rng.int(n);
  let closest = (await pairwiseSqDist(engine, selectRows(X, [indices[0]]), X)).data;
  let potential = sum(closest);
  const cumulative = new Float64Array(n);
  for (let c = 1; c < k; c++) {
    let acc = 0;
    for (let i = 0; i < n; i++) cumulative[i] = acc += closest[i];
    const candidates: number[] = [];
    for (let t = 0; t < trials; t++) candidates.push(Math.min(n - 1, searchSorted(cumulative, rng.next() * potential)));
    const D = await pairwiseSqDist(engine, selectRows(X, candidates), X);
    let best = -1;
    let bestPotential = Infinity;
    let bestRow: Float64Array | null = null;
    for (let t = 0; t < candidates.length; t++) {
      const row = D.data.subarray(t * n, (t + 1) * n);
      let p = 0;
      for (let i = 0; i < n; i++) {
        if (closest[i] < row[i]) row[i] = closest[i];
        p += row[i];
      }
      if (p < bestPotential) {
        bestPotential = p;
        best = t;
        bestRow = row;
      }
    }
    indices[c] = candidates[best];
    closest = Float64Array.from(bestRow as Float64Array);
    potential = bestPotential;
  }
  return { indices, potential };
}

function sum(a: Float64Array): number {
  let s = 0;
  for (const v of a) s += v;
  return s;
}

/** The first index whose value is >= x (numpy's searchsorted, side='left'); `values.length` when none is. */
function searchSorted(values: Float64Array, x: number): number {
  let lo = 0;
  let hi = values.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (values[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
