// Gradient rules of the ONNX ops a transformer block uses, each a small function that appends the backward nodes of
// one forward op to an `OnnxGraph` and returns the names of its input gradients. They know nothing about a tape or a
// model, so any graph (a student block, another block type, a different engine's graph) can reuse them.
//
// Conventions: `dy` is the gradient of the op's output; an `Operand` is a forward value with its (possibly symbolic)
// shape; a `need` flag per input skips the work for inputs that need no gradient (their result is `undefined`).
// Broadcasting along a symbolic axis must be expressed with a static 1 in the broadcast operand's shape.
import type { OnnxDim, OnnxGraph } from '@transformaly/core';
import { onnxAttr } from '@transformaly/core';

export type Shape = readonly OnnxDim[];

/** A forward value: its name in the graph and its shape (numbers, or strings for sizes known only at run time). */
export interface Operand {
  name: string;
  shape: Shape;
}

/** TensorProto.DataType.FLOAT, for Cast. */
const FLOAT = 1;

function isStatic(shape: Shape): shape is readonly number[] {
  return shape.every((d) => typeof d === 'number');
}

function normaliseAxis(axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new Error(`axis ${axis} is out of range for rank ${rank}`);
  return a;
}

/**
 * A 1-D int64 tensor holding `value`'s shape, for Reshape and Expand: a constant when at most one dimension is
 * symbolic (written as -1, which Reshape infers; never use the result for Expand then), else a Shape node.
 */
export function shapeTensor(g: OnnxGraph, value: Operand, forExpand = false): string {
  const symbolic = value.shape.filter((d) => typeof d !== 'number').length;
  if (symbolic === 0) return g.int64s(value.shape as number[], 'shape');
  if (symbolic === 1 && !forExpand) return g.int64s(value.shape.map((d) => (typeof d === 'number' ? d : -1)), 'shape');
  return g.op('Shape', [value.name]);
}

/** |numerator| / |denominator| (element counts) as a float scalar of the graph; a constant when both shapes are static. */
function elementCountRatio(g: OnnxGraph, numerator: Operand, denominator: Operand): string {
  if (isStatic(numerator.shape) && isStatic(denominator.shape)) {
    const count = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
    return g.scalar(count(numerator.shape) / count(denominator.shape));
  }
  const size = (v: Operand) => g.op('Cast', [g.op('Size', [v.name])], { to: FLOAT });
  return g.op('Div', [size(numerator), size(denominator)]);
}

/** The numpy broadcast of two shapes; symbolic dims are assumed to match each other or be broadcast from a static 1. */
export function broadcastShapes(a: Shape, b: Shape): OnnxDim[] {
  const rank = Math.max(a.length, b.length);
  const out: OnnxDim[] = [];
  for (let i = 0; i < rank; i++) {
    const da = i - (rank - a.length) >= 0 ? a[i - (rank - a.length)] : 1;
    const db = i - (rank - b.length) >= 0 ? b[i - (rank - b.length)] : 1;
    if (da === 1) out.push(db);
    else if (db === 1) out.push(da);
    else if (typeof da === 'number' && typeof db === 'number' && da !== db) {
      throw new Error(`shapes [${a.join(', ')}] and [${b.join(', ')}] do not broadcast`);
    } else out.push(typeof da === 'number' ? da : db);
  }
  return out;
}

/**
 * Sums `value` over all axes but its trailing `keep.length`, whose static sizes are `keep`. The sum runs as a
 * vector-matrix product with a ones vector: onnxruntime's MLAS does that about three times faster than ReduceSum
 * over a leading axis (the bias gradients of a ViT-B block: 4 ms against 14 ms for [6304, 3072]).
 */
export function sumLeadingAxes(g: OnnxGraph, value: string, keep: readonly number[]): string {
  const size = keep.reduce((a, b) => a * b, 1);
  const rows = g.op('Reshape', [value, g.int64s([-1, size], 'shape')]);
  const count = g.op('Slice', [g.op('Shape', [rows]), g.int64s([0], 'starts'), g.int64s([1], 'ends')]);
  const ones = g.op('ConstantOfShape', [count], { value: onnxAttr.tensor({ dims: [1], data: Float32Array.of(1) }) });
  const summed = g.op('MatMul', [ones, rows]);
  return keep.length === 1 ? summed : g.op('Reshape', [summed, g.int64s(keep, 'shape')]);
}

/**
 * The gradient of a broadcast input: `dy` (of shape `yShape`) summed over the leading axes `x` lacks and over the
 * axes where `x` has size 1, then given `x`'s shape.
 */
export function sumToShape(g: OnnxGraph, dy: string, yShape: Shape, x: Operand): string {
  const lead = yShape.length - x.shape.length;
  if (lead < 0) throw new Error(`cannot sum a gradient of rank ${yShape.length} to rank ${x.shape.length}`);
  const leading = Array.from({ length: lead }, (_, i) => i);
  const inner: number[] = [];
  x.shape.forEach((d, j) => {
    if (d === 1 && yShape[lead + j] !== 1) inner.push(lead + j);
  });
  if (inner.length === 0) {
    if (leading.length === 0) return dy;
    if (isStatic(x.shape)) return sumLeadingAxes(g, dy, x.shape);
    return g.op('ReduceSum', [dy, g.int64s(leading, 'axes')], { keepdims: 0 });
  }
  const summed = g.op('ReduceSum', [dy, g.int64s([...leading, ...inner], 'axes')], { keepdims: 1 });
  return leading.length === 0 ? summed : g.op('Reshape', [summed, shapeTensor(g, x)]);
}

/** y = a + b (broadcasting). */
export function addGrad(g: OnnxGraph, dy: string, yShape: Shape, a: Operand, b: Operand, need: readonly boolean[] = [true, true]) {
  return [need[0] ? sumToShape(g, dy, yShape, a) : undefined, need[1] ? sumToShape(g, dy, yShape, b) : undefined];
}

/** y = a - b (broadcasting). */
export function subGrad(g: OnnxGraph, dy: string, yShape: Shape, a: Operand, b: Operand, need: readonly boolean[] = [true, true]) {
  return [
    need[0] ? sumToShape(g, dy, yShape, a) : undefined,
    need[1] ? g.op('Neg', [sumToShape(g, dy, yShape, b)]) : undefined,
  ];
}

/** y = a * b (broadcasting). When a and b are the same value the tape adds the two contributions. */
export function mulGrad(g: OnnxGraph, dy: string, yShape: Shape, a: Operand, b: Operand, need: readonly boolean[] = [true, true]) {
  return [
    need[0] ? sumToShape(g, g.op('Mul', [dy, b.name]), yShape, a) : undefined,
    need[1] ? sumToShape(g, g.op('Mul', [dy, a.name]), yShape, b) : undefined,
  ];
}

function swapLastTwo(rank: number): number[] {
  const perm = Array.from({ length: rank }, (_, i) => i);
  [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1], perm[rank - 2]];
  return perm;
}

/** alpha * op(A) @ op(B), where op transposes the last two axes when its flag is set. */
export interface MatMulOptions {
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
}

/**
 * Emits alpha * op(a) @ op(b). With `fused`, one onnxruntime FusedMatMul (com.microsoft domain, CPU and CUDA), whose
 * GEMM reads the operands transposed in place; otherwise standard ONNX: Transpose nodes, MatMul and a Mul by alpha.
 */
export function emitMatMul(g: OnnxGraph, a: Operand, b: Operand, options: MatMulOptions, fused: boolean, output?: string): string {
  const alpha = options.alpha ?? 1;
  if (fused && (options.transA || options.transB || alpha !== 1)) {
    return g.op(
      'FusedMatMul',
      [a.name, b.name],
      { transA: options.transA ? 1 : 0, transB: options.transB ? 1 : 0, alpha: onnxAttr.float(alpha) },
      { domain: 'com.microsoft', output },
    );
  }
  const t = (x: Operand, flag: boolean | undefined) => (flag ? g.op('Transpose', [x.name], { perm: swapLastTwo(x.shape.length) }) : x.name);
  if (alpha === 1) return g.op('MatMul', [t(a, options.transA), t(b, options.transB)], {}, { output });
  return g.op('Mul', [g.op('MatMul', [t(a, options.transA), t(b, options.transB)]), g.scalar(alpha)], {}, { output });
}

/**
 * y = alpha * op(a) @ op(b) (ONNX MatMul semantics for ranks >= 2, batch axes broadcast). With A' = op(a) and
 * B' = op(b): dA' = alpha dy B'^T and dB' = alpha A'^T dy; a transposed operand takes the transposed gradient, so every
 * product is again one `emitMatMul` with transpose flags and no copy. Gradients are summed over the batch axes an
 * operand was broadcast along.
 */
export function matMulGrad(
  g: OnnxGraph,
  dy: string,
  yShape: Shape,
  a: Operand,
  b: Operand,
  need: readonly boolean[] = [true, true],
  options: MatMulOptions = {},
  fused = false,
) {
  if (a.shape.length < 2 || b.shape.length < 2) throw new Error('matMulGrad: operands of rank 1 are not supported');
  const { transA = false, transB = false, alpha = 1 } = options;
  const d: Operand = { name: dy, shape: yShape };
  const grad = (product: string, x: Operand) => sumToShape(g, product, [...yShape.slice(0, -2), ...x.shape.slice(-2)], x);
  let da: string | undefined;
  let db: string | undefined;
  if (need[0]) {
    const product = transA
      ? emitMatMul(g, b, d, { transA: transB, transB: true, alpha }, fused)
      : emitMatMul(g, d, b, { transB: !transB, alpha }, fused);
    da = grad(product, a);
  }
  if (need[1]) {
    const product = transB
      ? emitMatMul(g, d, a, { transA: true, transB: transA, alpha }, fused)
      : emitMatMul(g, a, d, { transA: !transA, alpha }, fused);
    db = grad(product, b);
  }
  return [da, db];
}

export interface GemmAttributes {
  transA?: number;
  transB?: number;
  alpha?: number;
  beta?: number;
}

/**
 * y = alpha * A' @ B' + beta * C with A' = A^T when transA (likewise B), A' [M, K], B' [K, N], C broadcast to [M, N].
 * Each gradient is one Gemm whose transpose flags absorb every transpose.
 */
export function gemmGrad(
  g: OnnxGraph,
  dy: string,
  a: Operand,
  b: Operand,
  c: Operand | undefined,
  attrs: GemmAttributes,
  need: readonly boolean[] = [true, true, true],
) {
  const transA = attrs.transA ?? 0;
  const transB = attrs.transB ?? 0;
  const alpha = attrs.alpha ?? 1;
  const beta = attrs.beta ?? 1;
  const gemm = (x: string, y: string, tx: number, ty: number) =>
    g.op('Gemm', [x, y], { transA: tx, transB: ty, ...(alpha !== 1 ? { alpha: onnxAttr.float(alpha) } : {}) });
  // dA' = dy B'^T and dB' = A'^T dy; transposing a product swaps and transposes its factors.
  const da = !need[0] ? undefined : transA ? gemm(b.name, dy, transB, 1) : gemm(dy, b.name, 0, transB ? 0 : 1);
  const db = !need[1] ? undefined : transB ? gemm(dy, a.name, 1, transA) : gemm(a.name, dy, transA ? 0 : 1, 0);
  let dc: string | undefined;
  if (c && need[2]) {
    const mOut = transA ? a.shape[1] : a.shape[0];
    const nOut = transB ? b.shape[0] : b.shape[1];
    dc = sumToShape(g, dy, [mOut, nOut], c);
    if (beta !== 1) dc = g.op('Mul', [dc, g.scalar(beta)]);
  }
  return [da, db, dc];
}

/**
 * LayerNormalization over the last axis, y = xhat * scale + bias with xhat = (x - mean) * invStdDev (the op's Mean
 * and InvStdDev outputs):
 *   dScale = sum over the other axes of dy * xhat, dBias = sum of dy,
 *   dx = invStdDev * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dy * scale.
 */
export function layerNormGrad(
  g: OnnxGraph,
  dy: string,
  x: Operand,
  scale: string,
  mean: string,
  invStdDev: string,
  need: readonly boolean[] = [true, true, true],
) {
  const rank = x.shape.length;
  const width = x.shape[rank - 1];
  const sumRows = (value: string) =>
    typeof width === 'number'
      ? sumLeadingAxes(g, value, [width])
      : g.op('ReduceSum', [value, g.int64s(Array.from({ length: rank - 1 }, (_, i) => i), 'axes')], { keepdims: 0 });
  if (!need[0] && !need[1] && !need[2]) return [undefined, undefined, undefined];
  const xhat = need[0] || need[1] ? g.op('Mul', [g.op('Sub', [x.name, mean]), invStdDev]) : '';
  let dx: string | undefined;
  if (need[0]) {
    const dxhat = g.op('Mul', [dy, scale]);
    const meanDxhat = g.op('ReduceMean', [dxhat], { axes: [-1], keepdims: 1 });
    const meanDxhatXhat = g.op('ReduceMean', [g.op('Mul', [dxhat, xhat])], { axes: [-1], keepdims: 1 });
    const centred = g.op('Sub', [g.op('Sub', [dxhat, meanDxhat]), g.op('Mul', [xhat, meanDxhatXhat])]);
    dx = g.op('Mul', [centred, invStdDev]);
  }
  const dScale = need[1] ? sumRows(g.op('Mul', [dy, xhat])) : undefined;
  const dBias = need[2] ? sumRows(dy) : undefined;
  return [dx, dScale, dBias];
}

/**
 * y = softmax(x) along `axis` (opset 13 semantics): dx = p - y * sum(p, axis) with p = dy * y. In this order each
 * full-size intermediate can overwrite an input at its last use.
 */
export function softmaxGrad(g: OnnxGraph, dy: string, y: string, axis: number): string {
  const p = g.op('Mul', [dy, y]);
  const sum = g.op('ReduceSum', [p, g.int64s([axis], 'axes')], { keepdims: 1 });
  return g.op('Sub', [p, g.op('Mul', [y, sum])]);
}

/**
 * y = x * Phi(x) with the exact (erf) normal CDF. dx = dy * (Phi(x) + x phi(x)); with s = x / sqrt(2) that is
 * dy * 0.5 * (1 + erf(s) + (2 / sqrt(pi)) * s / exp(s^2)), where s / exp(s^2) tends to 0 for large |s| (exp overflows
 * to infinity there), as it should. Everything is recomputed from x: no intermediate of the forward GELU stays alive
 * until the backward pass, and the forward keeps onnxruntime's fused Gelu kernel (s is made with a Mul here and a Div
 * in `Tape.geluErf`, so common-subexpression elimination cannot merge the two and undo that fusion). The chain reads
 * s rather than x and takes erf last, so each full-size intermediate can overwrite an input at its last use.
 */
export function geluErfGrad(g: OnnxGraph, dy: string, x: string): string {
  const s = g.op('Mul', [x, g.scalar(Math.SQRT1_2)]);
  const density = g.op('Mul', [g.op('Div', [s, g.op('Exp', [g.op('Mul', [s, s])])]), g.scalar(2 / Math.sqrt(Math.PI))]);
  const derivativeTimesTwo = g.op('Add', [g.op('Add', [g.op('Erf', [s]), density]), g.scalar(1)]);
  return g.op('Mul', [g.op('Mul', [derivativeTimesTwo, dy]), g.scalar(0.5)]);
}

/** y = reshape(x): dx = reshape(dy) back to x's shape. */
export function reshapeGrad(g: OnnxGraph, dy: string, x: Operand): string {
  return g.op('Reshape', [dy, shapeTensor(g, x)]);
}

/** y = transpose(x, perm): dx = transpose(dy, inverse perm). */
export function transposeGrad(g: OnnxGraph, dy: string, perm: readonly number[]): string {
  const inverse = new Array<number>(perm.length);
  perm.forEach((p, i) => (inverse[p] = i));
  return g.op('Transpose', [dy], { perm: inverse });
}

/**
 * y = ReduceMean(x, axes, keepdims): dx = dy broadcast back over the reduced axes, times |y| / |x|. The scaling is
 * applied to the small dy before the Expand.
 */
export function reduceMeanGrad(g: OnnxGraph, dy: string, x: Operand, y: Operand, axes: readonly number[], keepdims: boolean): string {
  const rank = x.shape.length;
  const normalised = axes.length === 0 ? Array.from({ length: rank }, (_, i) => i) : axes.map((a) => normaliseAxis(a, rank));
  const scaled = g.op('Mul', [dy, elementCountRatio(g, y, x)]);
  const kept = keepdims ? scaled : g.op('Unsqueeze', [scaled, g.int64s([...normalised].sort((p, q) => p - q), 'axes')]);
  return g.op('Expand', [kept, shapeTensor(g, x, true)]);
}

/** y_i = split(x, axis)_i: dx = concat(dy_i); parts without a gradient contribute zeros. */
export function splitGrad(g: OnnxGraph, dys: readonly (string | undefined)[], parts: readonly Operand[], axis: number): string {
  const pieces = dys.map((dy, i) => {
    if (dy !== undefined) return dy;
    const zero = onnxAttr.tensor({ dims: [1], data: Float32Array.of(0) });
    return g.op('ConstantOfShape', [shapeTensor(g, parts[i], true)], { value: zero });
  });
  return g.op('Concat', pieces, { axis });
}
