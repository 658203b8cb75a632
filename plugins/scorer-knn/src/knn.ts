import {
  NeighborIndex,
  assertCols,
  assertPositiveInteger,
  assertUsableMatrix,
  castGraph,
  columnMeans,
  metaNumber,
  onnxAttr,
  rowSqNorms,
  stateMeta,
  subtractRow,
  subtractRowGraph,
} from '@transformaly/core';
import type { DensityScorer, Matrix, NumericEngine, OnnxExportContext, StageState } from '@transformaly/core';

export interface KnnScorerOptions {
  /** Neighbours averaged per query (default 2). Must not exceed the number of training rows. */
  k?: number;
  /** Queries per engine call; default sized for about 4M distances per block. */
  blockRows?: number;
}

const KIND = 'knn';
const VERSION = 1;
const WHAT = 'KnnScorer';

/**
 * Normality = minus the mean Euclidean distance to the k nearest training rows (exact, as sklearn's
 * `NearestNeighbors(n_neighbors=k).kneighbors(Y)`; a query equal to a training row has that row at distance 0).
 */
export class KnnScorer implements DensityScorer {
  readonly name = KIND;
  readonly options: Readonly<{ k: number; blockRows: number | undefined }>;
  private model: { train: Matrix; index: NeighborIndex; k: number } | null = null;

  constructor(
    private readonly engine: NumericEngine,
    options: KnnScorerOptions = {},
  ) {
    const k = options.k ?? 2;
    assertPositiveInteger(k, `${WHAT}: options.k`);
    if (options.blockRows !== undefined) assertPositiveInteger(options.blockRows, `${WHAT}: options.blockRows`);
    this.options = Object.freeze({ k, blockRows: options.blockRows });
  }

  get fitted(): boolean {
    return this.model !== null;
  }

  /** Neighbours per query of the fitted model (from the options, or from an imported state). */
  get k(): number {
    return this.model?.k ?? this.options.k;
  }

  fit(X: Matrix): void {
    assertUsableMatrix(X, `${WHAT}.fit: X`);
    const k = this.options.k;
    checkK(k, X.rows, `${WHAT}.fit`);
    // A private copy: the caller may reuse its buffer.
    const train: Matrix = { rows: X.rows, cols: X.cols, data: X.data.slice() };
    this.model = { train, index: new NeighborIndex(this.engine, train), k };
  }

  async scoreSamples(Y: Matrix): Promise<Float64Array> {
    const { index, k } = this.requireModel('scoreSamples');
    assertUsableMatrix(Y, `${WHAT}.scoreSamples: Y`, 0);
    assertCols(Y, index.dim, `${WHAT}.scoreSamples: Y`);
    const { distances } = await index.search(Y, k, { blockRows: this.options.blockRows });
    const out = new Float64Array(Y.rows);
    for (let i = 0; i < Y.rows; i++) {
      let s = 0;
      for (let c = 0; c < k; c++) s += distances[i * k + c];
      // `+ 0` turns -0 (a query on a training row) into 0.
      out[i] = -s / k + 0;
    }
    return out;
  }

  /**
   * `scoreSamples` as float64 nodes, with the training rows (centred on their mean) as a constant: the k nearest rows
   * by ||t||^2 - 2 q.t, then their exact distances, as the index recomputes them.
   */
  exportOnnx(ctx: OnnxExportContext, features: string): string {
    const { train, k } = this.requireModel('exportOnnx');
    const g = ctx.graph;
    const mean = columnMeans(train);
    const centred = subtractRow(train, mean);
    const rows = ctx.weight('train_centred', { dims: [train.rows, train.cols], data: centred.data });
    const norms = ctx.weight('train_sq_norms', { dims: [train.rows], data: rowSqNorms(centred) });
    const q = subtractRowGraph(ctx, castGraph(ctx, features, 'float64'), mean, 'train_mean');
    const screened = g.op('Gemm', [q, rows, norms], { transB: 1, alpha: onnxAttr.float(-2) });
    const [, nearest] = g.node('TopK', [screened, g.int64s([k])], 2, { axis: 1, largest: 0, sorted: 1 });
    const diff = g.op('Sub', [g.op('Unsqueeze', [q, g.int64s([1])]), g.op('Gather', [rows, nearest], { axis: 0 })]);
    const distances = g.op('Sqrt', [g.op('ReduceSumSquare', [diff], { axes: [2], keepdims: 0 })]);
    return g.op('Neg', [g.op('ReduceMean', [distances], { axes: [1], keepdims: 0 })]);
  }

  exportState(): StageState {
    const { train, k } = this.requireModel('exportState');
    return {
      meta: { kind: KIND, version: VERSION, k, rows: train.rows, cols: train.cols },
      arrays: { train: { dims: [train.rows, train.cols], data: train.data.slice() } },
    };
  }

  importState(state: StageState): void {
    const what = `${WHAT}.importState`;
    const meta = stateMeta(state, what, KIND, VERSION);
    const k = metaNumber(meta, 'k', what, true);
    const rows = metaNumber(meta, 'rows', what, true);
    const cols = metaNumber(meta, 'cols', what, true);
    const entry = state.arrays?.train;
    if (!entry) throw new Error(`${what}: state has no array 'train'`);
    if (!(entry.data instanceof Float32Array) && !(entry.data instanceof Float64Array)) throw new TypeError(`${what}: array 'train' must be float32 or float64`);
    if (entry.dims.length !== 2 || entry.dims[0] !== rows || entry.dims[1] !== cols) {
      throw new RangeError(`${what}: array 'train' has dims [${entry.dims.join(', ')}], expected [${rows}, ${cols}]`);
    }
    const train: Matrix = { rows, cols, data: entry.data.slice() };
    assertUsableMatrix(train, `${what}: train`);
    assertPositiveInteger(k, `${what}: meta.k`);
    checkK(k, rows, what);
    // The state describes the fitted model, whatever options this instance was constructed with.
    this.model = { train, index: new NeighborIndex(this.engine, train), k };
  }

  private requireModel(method: string): NonNullable<KnnScorer['model']> {
    if (!this.model) throw new Error(`${WHAT}.${method}: the scorer is not fitted; call fit() or importState() first`);
    return this.model;
  }
}

function checkK(k: number, rows: number, what: string): void {
  if (k > rows) {
    throw new RangeError(`${what}: k = ${k} neighbours requested but there ${rows === 1 ? 'is' : 'are'} only ${rows} training row${rows === 1 ? '' : 's'}`);
  }
}
