// Each ONNX operator that runtime-tfjs maps to tfjs, on its own output, against onnxruntime: one small graph per
// case whose outputs are the operator's outputs (integer and boolean results cast to float32, the only output type
// sessions return), with the attribute forms and edge cases the mapping handles (broadcasting, negative axes and
// indices, clamped slices, negative steps, grouped convolutions, constant and computed weights, older opsets).
// Every operator in the runtime's table must have a case here.
import { describe, expect, it } from 'vitest';
import { OnnxGraph, onnxAttr, Rng, serializeOnnxModel, type Tensor } from '@transformaly/core';
import { OnnxRuntime } from '@transformaly/runtime-onnx';
import { ONNX_OPS, TfjsRuntime } from '@transformaly/runtime-tfjs';
import { afterAll, beforeAll } from 'vitest';
import { expectClose } from './fixtures/close.js';

interface OpCase {
  op: string;
  what: string;
  /** Declares inputs x0, x1, ... (float32, with the feeds' dims) and the outputs to compare. */
  build(g: OnnxGraph, inputs: string[]): string[];
  feeds: Tensor[];
  opset?: number;
  /** Results that must match bit for bit (data movement, integer arithmetic, comparisons). */
  exact?: boolean;
  /** Tolerance for computed results (expectClose's rule); default 1e-6. */
  rtol?: number;
}

function normal(dims: number[], seed: number, scale = 1, offset = 0): Tensor {
  const rng = new Rng(seed);
  return { dims, data: Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => offset + scale * rng.normal()) };
}

function positive(dims: number[], seed: number): Tensor {
  const t = normal(dims, seed);
  return { dims, data: t.data.map((v) => Math.abs(v) + 0.1) };
}

function values(dims: number[], data: number[]): Tensor {
  return { dims, data: Float32Array.from(data) };
}

const weights = (dims: number[], seed: number) => {
  const t = normal(dims, seed, 0.3);
  return { dims, data: t.data };
};

const toFloat = (g: OnnxGraph, name: string) => g.op('Cast', [name], { to: 1 });
const unary = (op: string, feed: Tensor, what = 'elementwise', rtol?: number): OpCase => ({ op, what, build: (g, [x]) => [g.op(op, [x])], feeds: [feed], rtol });
const x234 = normal([2, 3, 4], 1);

const CASES: OpCase[] = [
  unary('Sqrt', positive([2, 3, 4], 2)),
  unary('Reciprocal', positive([2, 3, 4], 3)),
  unary('Erf', normal([2, 3, 4], 4, 1.5)),
  unary('Exp', x234),
  unary('Log', positive([2, 3, 4], 5)),
  unary('Neg', x234),
  unary('Abs', x234),
  { ...unary('Floor', normal([2, 3, 4], 6, 3)), exact: true },
  { ...unary('Ceil', normal([2, 3, 4], 7, 3)), exact: true },
  unary('Relu', x234),
  unary('Sigmoid', normal([2, 3, 4], 8, 3)),
  unary('Tanh', normal([2, 3, 4], 9, 2)),
  { ...unary('Identity', x234), exact: true },
  { op: 'Size', what: 'element count', build: (g, [x]) => [toFloat(g, g.op('Size', [x]))], feeds: [x234], exact: true },

  ...['Add', 'Sub', 'Mul'].map((op): OpCase => ({ op, what: 'broadcast [2,3,4] with [3,1]', build: (g, [a, b]) => [g.op(op, [a, b])], feeds: [x234, normal([3, 1], 10)] })),
  { op: 'Div', what: 'float, broadcast', build: (g, [a, b]) => [g.op('Div', [a, b])], feeds: [x234, positive([4], 11)] },
  {
    op: 'Div',
    what: 'int32, truncating toward zero',
    build: (g, [a, b]) => [toFloat(g, g.op('Div', [g.op('Cast', [a], { to: 6 }), g.op('Cast', [b], { to: 6 })]))],
    feeds: [values([6], [7, -7, 7, -7, 0, 9]), values([6], [2, 2, -2, -2, 3, 4])],
    exact: true,
  },
  ...[2, 0.5, 1, 3].map((e): OpCase => ({ op: 'Pow', what: `scalar exponent ${e}`, build: (g, [x]) => [g.op('Pow', [x, g.scalar(e)])], feeds: [positive([2, 3, 4], 12)], rtol: 1e-6 })),
  { op: 'Pow', what: 'broadcast exponent tensor', build: (g, [x, y]) => [g.op('Pow', [x, y])], feeds: [positive([2, 3, 4], 13), normal([4], 14)] },

  { op: 'MatMul', what: '[2,3,4] x [4,5]', build: (g, [a, b]) => [g.op('MatMul', [a, b])], feeds: [x234, normal([4, 5], 15)], rtol: 1e-5 },
  { op: 'MatMul', what: 'batched [2,3,4] x [2,4,5]', build: (g, [a, b]) => [g.op('MatMul', [a, b])], feeds: [x234, normal([2, 4, 5], 16)], rtol: 1e-5 },
  { op: 'MatMul', what: 'constant right side', build: (g, [a]) => [g.op('MatMul', [a, g.constant(weights([4, 5], 17))])], feeds: [x234], rtol: 1e-5 },
  {
    op: 'Gemm',
    what: 'alpha, beta, bias broadcast over rows',
    build: (g, [a, b]) => [g.op('Gemm', [a, b, g.constant(weights([5], 18))], { alpha: onnxAttr.float(0.5), beta: onnxAttr.float(2) })],
    feeds: [normal([3, 4], 19), normal([4, 5], 20)],
    rtol: 1e-5,
  },
  {
    op: 'Gemm',
    what: 'transA, transB on a constant B, bias [3,1]',
    build: (g, [a]) => [g.op('Gemm', [a, g.constant(weights([5, 4], 21)), g.constant(weights([3, 1], 22))], { transA: 1, transB: 1 })],
    feeds: [normal([4, 3], 23)],
    rtol: 1e-5,
  },
  {
    op: 'Gemm',
    what: 'bias of one element, and a scalar bias with beta',
    build: (g, [a, b]) => [g.op('Gemm', [a, b, g.constant(weights([1], 63))]), g.op('Gemm', [a, b, g.scalar(0.75)], { beta: onnxAttr.float(-2) })],
    feeds: [normal([3, 4], 64), normal([4, 5], 65)],
    rtol: 1e-5,
  },
  { op: 'Gemm', what: 'computed B, no bias', build: (g, [a, b]) => [g.op('Gemm', [a, b], { transB: 1 })], feeds: [normal([3, 4], 24), normal([5, 4], 25)], rtol: 1e-5 },

  {
    op: 'Conv',
    what: 'padded, strided, with bias',
    build: (g, [x]) => [g.op('Conv', [x, g.constant(weights([6, 4, 3, 3], 26)), g.constant(weights([6], 27))], { kernel_shape: [3, 3], pads: [1, 1, 1, 1], strides: [2, 2] })],
    feeds: [normal([2, 4, 7, 7], 28)],
    rtol: 1e-5,
  },
  {
    op: 'Conv',
    what: 'dilated, asymmetric pads',
    build: (g, [x]) => [g.op('Conv', [x, g.constant(weights([3, 4, 2, 2], 29))], { dilations: [2, 2], pads: [1, 0, 2, 1] })],
    feeds: [normal([1, 4, 6, 6], 30)],
    rtol: 1e-5,
  },
  {
    op: 'Conv',
    what: 'depthwise (group = channels)',
    build: (g, [x]) => [g.op('Conv', [x, g.constant(weights([4, 1, 3, 3], 31)), g.constant(weights([4], 32))], { group: 4, pads: [1, 1, 1, 1] })],
    feeds: [normal([2, 4, 5, 5], 33)],
    rtol: 1e-5,
  },
  {
    op: 'Conv',
    what: 'auto_pad SAME_LOWER, stride 2',
    build: (g, [x]) => [g.op('Conv', [x, g.constant(weights([2, 3, 4, 4], 34))], { auto_pad: 'SAME_LOWER', strides: [2, 2] })],
    feeds: [normal([1, 3, 7, 7], 35)],
    rtol: 1e-5,
  },
  {
    op: 'Conv',
    what: 'auto_pad SAME_UPPER, computed weights',
    build: (g, [x, w]) => [g.op('Conv', [x, w], { auto_pad: 'SAME_UPPER' })],
    feeds: [normal([1, 3, 6, 6], 36), normal([2, 3, 3, 3], 37)],
    rtol: 1e-5,
  },

  { op: 'Reshape', what: '0 copies a dimension, -1 infers one', build: (g, [x]) => [g.op('Reshape', [x, g.int64s([0, -1])])], feeds: [x234], exact: true },
  { op: 'Reshape', what: 'to 1-D', build: (g, [x]) => [g.op('Reshape', [x, g.int64s([-1])])], feeds: [x234], exact: true },
  { op: 'Transpose', what: 'perm [2, 0, 1]', build: (g, [x]) => [g.op('Transpose', [x], { perm: [2, 0, 1] })], feeds: [x234], exact: true },
  { op: 'Transpose', what: 'default perm (reversed)', build: (g, [x]) => [g.op('Transpose', [x])], feeds: [x234], exact: true },
  { op: 'Concat', what: 'three inputs, axis -1', build: (g, [a, b]) => [g.op('Concat', [a, b, a], { axis: -1 })], feeds: [x234, normal([2, 3, 2], 38)], exact: true },
  { op: 'Expand', what: '[3,1] to [2,3,4]', build: (g, [x]) => [g.op('Expand', [x, g.int64s([2, 3, 4])])], feeds: [normal([3, 1], 39)], exact: true },
  { op: 'Expand', what: 'to a shape of lower rank', build: (g, [x]) => [g.op('Expand', [x, g.int64s([1, 4])])], feeds: [normal([2, 3, 1], 40)], exact: true },
  { op: 'Shape', what: 'whole shape', build: (g, [x]) => [toFloat(g, g.op('Shape', [x]))], feeds: [x234], exact: true },
  { op: 'Shape', what: 'start and end (opset 15)', build: (g, [x]) => [toFloat(g, g.op('Shape', [x], { start: 1, end: -1 }))], feeds: [normal([2, 3, 4, 5], 41)], exact: true },
  {
    op: 'Gather',
    what: 'axis 0, 2-D indices with a negative one',
    build: (g, [x]) => [g.op('Gather', [x, g.constant({ dims: [2, 2], data: BigInt64Array.of(0n, 1n, 1n, -1n) })], { axis: 0 })],
    feeds: [x234],
    exact: true,
  },
  { op: 'Gather', what: 'axis -1, scalar index', build: (g, [x]) => [g.op('Gather', [x, g.scalar(2, 'int64')], { axis: -1 })], feeds: [x234], exact: true },
  {
    op: 'Slice',
    what: 'negative step, clamped start and end, negative axis',
    build: (g, [x]) => [g.op('Slice', [x, g.int64s([100, -2]), g.int64s([-100, 0]), g.int64s([-1, 1]), g.int64s([-1, -2])])],
    feeds: [x234],
    exact: true,
  },
  { op: 'Slice', what: 'step 2, default axes', build: (g, [x]) => [g.op('Slice', [x, g.int64s([0, 1]), g.int64s([2, 3]), '', g.int64s([1, 2])])], feeds: [normal([2, 5], 42)], exact: true },
  {
    op: 'Slice',
    what: 'attributes (opset 9)',
    build: (g, [x]) => [g.op('Slice', [x], { starts: [1], ends: [1000], axes: [2] })],
    feeds: [x234],
    opset: 9,
    exact: true,
  },
  { op: 'Unsqueeze', what: 'axes [0, -1] as input', build: (g, [x]) => [g.op('Unsqueeze', [x, g.int64s([0, -1])])], feeds: [x234], exact: true },
  { op: 'Unsqueeze', what: 'axes attribute (opset 11)', build: (g, [x]) => [g.op('Unsqueeze', [x], { axes: [1] })], feeds: [x234], opset: 11, exact: true },
  { op: 'Squeeze', what: 'axes as input', build: (g, [x]) => [g.op('Squeeze', [x, g.int64s([1])])], feeds: [normal([2, 1, 3, 1], 43)], exact: true },
  { op: 'Squeeze', what: 'every axis of size 1', build: (g, [x]) => [g.op('Squeeze', [x])], feeds: [normal([2, 1, 3, 1], 44)], exact: true },
  ...[0, 2, -1].map((axis): OpCase => ({ op: 'Flatten', what: `axis ${axis}`, build: (g, [x]) => [g.op('Flatten', [x], { axis })], feeds: [normal([2, 3, 4, 5], 45)], exact: true })),
  { op: 'Softmax', what: 'axis -1', build: (g, [x]) => [g.op('Softmax', [x], { axis: -1 })], feeds: [normal([2, 3, 4], 46, 3)] },
  { op: 'Softmax', what: 'axis 1 (not the last)', build: (g, [x]) => [g.op('Softmax', [x], { axis: 1 })], feeds: [normal([2, 3, 4], 47, 3)] },
  { op: 'Softmax', what: 'opset 11: coerced to 2-D at the axis', build: (g, [x]) => [g.op('Softmax', [x], { axis: 1 })], feeds: [normal([2, 3, 4], 48, 3)], opset: 11 },
  { op: 'LogSoftmax', what: 'axis -1', build: (g, [x]) => [g.op('LogSoftmax', [x], { axis: -1 })], feeds: [normal([2, 3, 4], 49, 3)] },
  { op: 'LogSoftmax', what: 'axis 0', build: (g, [x]) => [g.op('LogSoftmax', [x], { axis: 0 })], feeds: [normal([2, 3, 4], 50, 3)] },
  {
    op: 'LayerNormalization',
    what: 'last axis, scale and bias',
    build: (g, [x]) => [g.op('LayerNormalization', [x, g.constant(weights([4], 51)), g.constant(weights([4], 52))], { axis: -1, epsilon: onnxAttr.float(1e-5) })],
    feeds: [normal([2, 3, 4], 53, 2, 1)],
    rtol: 1e-5,
  },
  {
    op: 'LayerNormalization',
    what: 'axis 1 (over the last two), no bias, large epsilon',
    build: (g, [x]) => [g.op('LayerNormalization', [x, g.constant(weights([3, 4], 54))], { axis: 1, epsilon: onnxAttr.float(0.5) })],
    feeds: [normal([2, 3, 4], 55)],
    rtol: 1e-5,
  },
  ...(['ReduceMean', 'ReduceMax', 'ReduceMin'] as const).flatMap((op): OpCase[] => [
    { op, what: 'axes attribute [0, 2], keepdims', build: (g, [x]) => [g.op(op, [x], { axes: [0, 2], keepdims: 1 })], feeds: [x234], rtol: 1e-6 },
    { op, what: 'axis -1, no keepdims', build: (g, [x]) => [g.op(op, [x], { axes: [-1], keepdims: 0 })], feeds: [x234], rtol: 1e-6 },
    { op, what: 'every axis', build: (g, [x]) => [g.op(op, [x], { keepdims: 0 })], feeds: [x234], rtol: 1e-6 },
    { op, what: 'axes as input (opset 18)', build: (g, [x]) => [g.op(op, [x, g.int64s([1])], { keepdims: 1 })], feeds: [x234], opset: 18, rtol: 1e-6 },
  ]),
  { op: 'ReduceSum', what: 'axes input [0, 2], keepdims', build: (g, [x]) => [g.op('ReduceSum', [x, g.int64s([0, 2])], { keepdims: 1 })], feeds: [x234], rtol: 1e-6 },
  { op: 'ReduceSum', what: 'no axes: every axis', build: (g, [x]) => [g.op('ReduceSum', [x], { keepdims: 0 })], feeds: [x234], rtol: 1e-6 },
  { op: 'ReduceSum', what: 'no axes with noop_with_empty_axes', build: (g, [x]) => [g.op('ReduceSum', [x], { noop_with_empty_axes: 1 })], feeds: [x234], exact: true },
  { op: 'ReduceSum', what: 'axes attribute (opset 11)', build: (g, [x]) => [g.op('ReduceSum', [x], { axes: [1], keepdims: 0 })], feeds: [x234], opset: 11, rtol: 1e-6 },
  {
    op: 'Constant',
    what: 'value tensor, value_float(s), value_int(s)',
    build: (g, [x]) => [
      g.op('Add', [x, g.op('Constant', [], { value: onnxAttr.tensor({ dims: [2, 1], data: Float32Array.of(0.5, -2) }) })]),
      g.op('Constant', [], { value_float: onnxAttr.float(1.25) }),
      g.op('Constant', [], { value_floats: onnxAttr.floats([1, -0.5, 3]) }),
      toFloat(g, g.op('Constant', [], { value_int: 7 })),
      toFloat(g, g.op('Constant', [], { value_ints: [4, -5] })),
    ],
    feeds: [normal([2, 3], 56)],
    exact: true,
  },
  {
    op: 'ConstantOfShape',
    what: 'a given value, and the default 0',
    build: (g, [x]) => [
      g.op('Add', [x, g.op('ConstantOfShape', [g.int64s([2, 3])], { value: onnxAttr.tensor({ dims: [1], data: Float32Array.of(0.25) }) })]),
      g.op('ConstantOfShape', [g.op('Shape', [x])]),
    ],
    feeds: [normal([2, 3], 57)],
    exact: true,
  },
  {
    op: 'Cast',
    what: 'to int32 and int64 (truncating toward zero), to bool (nonzero), back to float',
    build: (g, [x]) => [toFloat(g, g.op('Cast', [x], { to: 6 })), toFloat(g, g.op('Cast', [x], { to: 7 })), toFloat(g, g.op('Cast', [x], { to: 9 }))],
    feeds: [values([6], [2.7, -2.7, 0, -0.4, 1e3, 0.5])],
    exact: true,
  },
  {
    op: 'Split',
    what: 'sizes as input, axis 1',
    build: (g, [x]) => g.node('Split', [x, g.int64s([1, 3])], 2, { axis: 1 }),
    feeds: [normal([2, 4, 3], 58)],
    exact: true,
  },
  { op: 'Split', what: 'equal parts, axis -1', build: (g, [x]) => g.node('Split', [x], 2, { axis: -1 }), feeds: [normal([3, 6], 59)], exact: true },
  { op: 'Split', what: 'split attribute (opset 11)', build: (g, [x]) => g.node('Split', [x], 3, { axis: 0, split: [1, 1, 2] }), feeds: [normal([4, 2], 60)], opset: 11, exact: true },
  {
    op: 'Where',
    what: 'broadcast condition [3] over [2,3]',
    build: (g, [a, b]) => [g.op('Where', [g.op('Cast', [g.constant({ dims: [3], data: Float32Array.of(1, 0, 1) })], { to: 9 }), a, b])],
    feeds: [normal([2, 3], 61), normal([1], 62)],
    exact: true,
  },
];

const onnx = new OnnxRuntime({ threads: 1 });
let tfjs: TfjsRuntime;
beforeAll(async () => {
  tfjs = new TfjsRuntime({ progress: { task: () => ({ tick() {}, done() {} }), info() {}, warn() {} } });
  await tfjs.ready();
});
afterAll(async () => {
  await tfjs.dispose();
  await onnx.dispose();
});

describe('runtime-tfjs operators, each on its own output, against onnxruntime', () => {
  it('every operator of the mapping table has a case', () => {
    const covered = new Set(CASES.map((c) => c.op));
    expect([...ONNX_OPS.keys()].filter((op) => !covered.has(op))).toEqual([]);
  });

  it.each(CASES.map((c) => [`${c.op}: ${c.what}`, c] as const))('%s', async (_, c) => {
    const g = new OnnxGraph(c.op);
    const inputs = c.feeds.map((feed, i) => g.input(`x${i}`, 'float32', feed.dims));
    const outputs = c.build(g, inputs);
    for (const name of outputs) g.output(name, 'float32');
    const model = await serializeOnnxModel(g, c.opset === undefined ? {} : { opset: c.opset });
    const feeds = Object.fromEntries(c.feeds.map((feed, i) => [`x${i}`, feed]));
    const want = await (await onnx.createSession(model)).run(feeds);
    const session = await tfjs.createSession(model);
    const got = await session.run(feeds);
    await session.dispose();
    for (const name of outputs) {
      expect(got[name].dims, `${name} dims`).toEqual(want[name].dims);
      if (c.exact) expect(Array.from(got[name].data), name).toEqual(Array.from(want[name].data));
      else expectClose(got[name].data, want[name].data, c.rtol ?? 1e-6, name);
    }
  });
});
