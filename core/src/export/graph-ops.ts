// Graph pieces the built-in stages' `exportOnnx` hooks share, public for plugin authors: the same computations as the
// numeric helpers (`logGaussianDensities`, `logsumexpRows`), as nodes of an exported detector's graph.
import type { OnnxElementType } from '../onnx/graph.js';
import { onnxDataType } from '../onnx/serialize.js';
import { vecMat } from '../numeric/matrix.js';
import type { Matrix, OnnxExportContext } from '../types.js';

const LOG_2PI = Math.log(2 * Math.PI);

/** `value` converted to `type` (a Cast node). */
export function castGraph(ctx: OnnxExportContext, value: string, type: OnnxElementType): string {
  return ctx.graph.op('Cast', [value], { to: onnxDataType(type) });
}

/** `x - row` for a float64 [N, d] value and a constant row (e.g. centring on a fitted mean). */
export function subtractRowGraph(ctx: OnnxExportContext, x: string, row: Float64Array, name: string): string {
  return ctx.graph.op('Sub', [x, ctx.weight(name, { dims: [row.length], data: Float64Array.from(row) })]);
}

/**
 * `logGaussianDensities` as nodes: for a float64 [N, d] value `x`, log N(x | mean_k, covariance_k) of every row and
 * component as a float64 [N, K] value, where covariance_k^{-1} = W_k W_k^T (`factors[k]`) and `logDets[k]` =
 * sum(log(diag(W_k))). As the numeric engine computes it: one Gemm x [W_0 | W_1 | ...] - [mean_0 W_0 | ...] and a
 * sum of squares per component, in float64.
 */
export function logGaussianDensitiesGraph(
  ctx: OnnxExportContext,
  x: string,
  params: { means: Matrix; factors: readonly Matrix[]; logDets: ArrayLike<number> },
  name = 'gaussian',
): string {
  const { means, factors, logDets } = params;
  const K = means.rows;
  const d = means.cols;
  if (factors.length !== K || logDets.length !== K) throw new RangeError(`${ctx.scope}: ${K} means but ${factors.length} factors and ${logDets.length} log-determinants`);
  const Wcat = new Float64Array(d * K * d);
  const offset = new Float64Array(K * d);
  factors.forEach((W, k) => {
    if (W.rows !== d || W.cols !== d) throw new RangeError(`${ctx.scope}: factor ${k} is ${W.rows} x ${W.cols}, expected ${d} x ${d}`);
    for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) Wcat[i * K * d + k * d + j] = W.data[i * d + j];
    const muW = vecMat(means.data.subarray(k * d, (k + 1) * d), W);
    for (let j = 0; j < d; j++) offset[k * d + j] = -muW[j];
  });
  const g = ctx.graph;
  const projected = g.op('Gemm', [x, ctx.weight(`${name}.factors`, { dims: [d, K * d], data: Wcat }), ctx.weight(`${name}.offsets`, { dims: [K * d], data: offset })]);
  const squares = g.op('ReduceSumSquare', [g.op('Reshape', [projected, g.int64s([-1, K, d])])], { axes: [2], keepdims: 0 });
  // -0.5 * (d log 2pi + S) + logDet_k
  const halved = g.op('Mul', [g.op('Add', [squares, g.scalar(d * LOG_2PI, 'float64')]), g.scalar(-0.5, 'float64')]);
  return g.op('Add', [halved, ctx.weight(`${name}.log_dets`, { dims: [K], data: Float64Array.from(logDets) })]);
}

/** log(sum(exp(row))) of every row of a float64 [N, K] value, stable (the row maximum is factored out); float64 [N]. */
export function logSumExpGraph(ctx: OnnxExportContext, x: string): string {
  const g = ctx.graph;
  const max = g.op('ReduceMax', [x], { axes: [1], keepdims: 1 });
  const sum = g.op('ReduceSum', [g.op('Exp', [g.op('Sub', [x, max])]), g.int64s([1])], { keepdims: 0 });
  return g.op('Add', [g.op('Log', [sum]), g.op('Squeeze', [max, g.int64s([1])])]);
}
