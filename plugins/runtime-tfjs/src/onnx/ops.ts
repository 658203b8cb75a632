// ONNX operators (default domain, opset 13-17 semantics, older attribute forms where they differ) as tfjs ops.
// Everything an operator reads as a shape, axis list or index set comes to the host; everything else stays a tensor.
import * as tf from '@tensorflow/tfjs-core';
import type { AttributeValue, GraphNode, HostTensor } from './model.js';

/** A derived layout of a constant input, prepared once per session instead of on every run. */
export type ConstantLayout = 'transpose' | 'hwio' | `depthwise:${number}`;

export interface OpContext {
  readonly node: GraphNode;
  readonly opset: number;
  /** The constant (initializer) input `index` in `layout`, or undefined when that input is computed. */
  constant(index: number, layout: ConstantLayout): tf.Tensor | undefined;
}

export interface OpDef {
  run(inputs: Array<tf.Tensor | undefined>, ctx: OpContext): tf.Tensor | Array<tf.Tensor | undefined>;
  /** The layouts this node asks of its constant inputs, so that a session can keep only those copies. */
  constantLayouts?(node: GraphNode): Array<[index: number, layout: ConstantLayout]>;
}

// ---------------------------------------------------------------------------------------------------------------
// Attributes and host values
// ---------------------------------------------------------------------------------------------------------------

function attr(node: GraphNode, name: string): AttributeValue | undefined {
  return node.attributes.get(name);
}

export function intAttr(node: GraphNode, name: string, fallback: number): number {
  const value = attr(node, name);
  if (value === undefined) return fallback;
  if (typeof value !== 'number') throw new Error(`attribute ${name} must be an integer`);
  return value;
}

function floatAttr(node: GraphNode, name: string, fallback: number): number {
  const value = attr(node, name);
  if (value === undefined) return fallback;
  if (typeof value !== 'number') throw new Error(`attribute ${name} must be a number`);
  return value;
}

function intsAttr(node: GraphNode, name: string): number[] | undefined {
  const value = attr(node, name);
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'number')) throw new Error(`attribute ${name} must be a list of integers`);
  return value as number[];
}

function stringAttr(node: GraphNode, name: string, fallback: string): string {
  const value = attr(node, name);
  if (value === undefined) return fallback;
  if (typeof value !== 'string') throw new Error(`attribute ${name} must be a string`);
  return value;
}

/** The values of a small tensor (a shape, axes, indices) on the host. */
export function hostInts(t: tf.Tensor): number[] {
  return Array.from(t.dataSync() as ArrayLike<number>);
}

function required(inputs: Array<tf.Tensor | undefined>, index: number, what: string): tf.Tensor {
  const t = inputs[index];
  if (t === undefined) throw new Error(`input ${index} (${what}) is required`);
  return t;
}

function normAxis(axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) throw new Error(`axis ${axis} is out of range for rank ${rank}`);
  return a;
}

function broadcastShapes(a: readonly number[], b: readonly number[]): number[] {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const x = a[a.length - rank + i] ?? 1;
    const y = b[b.length - rank + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) throw new Error(`shapes [${a.join(', ')}] and [${b.join(', ')}] do not broadcast`);
    out.push(x === 1 ? y : x);
  }
  return out;
}

/** Axes from the `axes` input (newer opsets) or attribute (older ones); undefined when neither is given. */
function axesOf(inputs: Array<tf.Tensor | undefined>, index: number, node: GraphNode): number[] | undefined {
  const input = inputs[index];
  if (input !== undefined) return hostInts(input);
  return intsAttr(node, 'axes');
}

// ---------------------------------------------------------------------------------------------------------------
// Operators
// ---------------------------------------------------------------------------------------------------------------

const unary = (f: (x: tf.Tensor) => tf.Tensor): OpDef => ({ run: (inputs) => f(required(inputs, 0, 'X')) });
const binary = (f: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor): OpDef => ({
  run: (inputs) => f(required(inputs, 0, 'A'), required(inputs, 1, 'B')),
});

/** ONNX integer division truncates toward zero; tf's int32 division floors. */
function integerDiv(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  return tf.mul(tf.mul(tf.sign(a), tf.sign(b)), tf.floorDiv(tf.abs(a), tf.abs(b)));
}

function matMul(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  // 1-D operands follow numpy: a vector is a row (left) or a column (right), and that axis is dropped again.
  if (a.rank === 1) return tf.squeeze(matMul(tf.reshape(a, [1, a.shape[0]]), b), [-2]);
  if (b.rank === 1) return tf.squeeze(matMul(a, tf.reshape(b, [b.shape[0], 1])), [-1]);
  if (b.rank === 2) {
    // One 2-D product over all leading rows: the fast (XNNPACK) kernel on wasm, which batched products miss.
    const k = a.shape[a.rank - 1];
    const out = tf.matMul(tf.reshape(a, [-1, k]), b as tf.Tensor2D);
    return a.rank === 2 ? out : tf.reshape(out, [...a.shape.slice(0, -1), b.shape[1] as number]);
  }
  const rank = Math.max(a.rank, b.rank);
  const lift = (t: tf.Tensor) => (t.rank === rank ? t : tf.reshape(t, [...new Array(rank - t.rank).fill(1), ...t.shape]));
  return tf.matMul(lift(a), lift(b));
}

const gemm: OpDef = {
  constantLayouts: (node) => (intAttr(node, 'transB', 0) ? [[1, 'transpose']] : []),
  run(inputs, ctx) {
    const { node } = ctx;
    let a = required(inputs, 0, 'A') as tf.Tensor2D;
    if (intAttr(node, 'transA', 0)) a = tf.transpose(a);
    const transB = intAttr(node, 'transB', 0) !== 0;
    // A transposed constant is prepared once; transpose flags would pick tfjs-wasm's slow kernel.
    let b = (transB ? ctx.constant(1, 'transpose') : undefined) as tf.Tensor2D | undefined;
    b ??= transB ? tf.transpose(required(inputs, 1, 'B') as tf.Tensor2D) : (required(inputs, 1, 'B') as tf.Tensor2D);
    const alpha = floatAttr(node, 'alpha', 1);
    const beta = floatAttr(node, 'beta', 1);
    const c = inputs[2];
    // The fused kernel takes only a full row of column biases ([N]); C may broadcast any other way too ([1], [M, 1],
    // [M, N], a scalar), which goes through a plain add.
    const columnBias = c !== undefined && beta === 1 && c.rank === 1 && c.shape[0] === b.shape[1];
    if (alpha === 1 && (c === undefined || columnBias)) return tf.fused.matMul({ a, b, bias: c });
    let y = tf.matMul(a, b);
    if (alpha !== 1) y = tf.mul(y, alpha);
    if (c !== undefined && beta !== 0) y = tf.add(y, beta === 1 ? c : tf.mul(c, beta));
    return y;
  },
};

function convPadding(node: GraphNode, x: tf.Tensor4D, kernel: number[], strides: number[], dilations: number[]): 'valid' | 'same' | [[0, 0], [number, number], [number, number], [0, 0]] {
  const autoPad = stringAttr(node, 'auto_pad', 'NOTSET');
  if (autoPad === 'VALID') return 'valid';
  if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') {
    if (autoPad === 'SAME_UPPER') return 'same';
    const pads: number[] = [];
    for (let i = 0; i < 2; i++) {
      const size = x.shape[2 + i];
      const out = Math.ceil(size / strides[i]);
      const total = Math.max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - size);
      pads.push(Math.ceil(total / 2), Math.floor(total / 2));
    }
    return [[0, 0], [pads[0], pads[1]], [pads[2], pads[3]], [0, 0]];
  }
  if (autoPad !== 'NOTSET') throw new Error(`auto_pad ${autoPad} is not an ONNX value`);
  const pads = intsAttr(node, 'pads') ?? [0, 0, 0, 0];
  if (pads.length !== 4) throw new Error(`pads must have 4 values for a 2-D convolution, got ${pads.length}`);
  if (pads.every((p) => p === 0)) return 'valid';
  return [[0, 0], [pads[0], pads[2]], [pads[1], pads[3]], [0, 0]];
}

const conv: OpDef = {
  constantLayouts(node) {
    const group = intAttr(node, 'group', 1);
    return [[1, group === 1 ? 'hwio' : `depthwise:${group}`]];
  },
  run(inputs, ctx) {
    const { node } = ctx;
    const x = required(inputs, 0, 'X');
    if (x.rank !== 4) throw new Error(`only 2-D convolutions (4-D input) are supported, got input rank ${x.rank}`);
    const group = intAttr(node, 'group', 1);
    const channels = x.shape[1];
    const depthwise = group !== 1;
    // The filter: prepared once when constant ([kh, kw, in, out] or [kh, kw, C, multiplier]), else converted here.
    const prepared = ctx.constant(1, depthwise ? `depthwise:${group}` : 'hwio');
    let filter: tf.Tensor4D;
    if (prepared) filter = prepared as tf.Tensor4D;
    else {
      const w = required(inputs, 1, 'W');
      if (w.rank !== 4) throw new Error(`W must be 4-D, got dims [${w.shape.join(', ')}]`);
      if (depthwise && w.shape[1] !== 1) throw new Error(`a depthwise filter has 1 input channel per group, got ${w.shape[1]}`);
      filter = (depthwise ? depthwiseFilter(w, group) : tf.transpose(w, [2, 3, 1, 0])) as tf.Tensor4D;
    }
    const [kh, kw] = filter.shape;
    if (depthwise && group !== channels) {
      throw new Error(`group=${group} is supported only as 1 or as a depthwise convolution (group = input channels = ${channels})`);
    }
    if (filter.shape[2] !== channels) {
      throw new Error(`the filter expects ${filter.shape[2]} input channels, the input has ${channels}`);
    }
    const kernel = intsAttr(node, 'kernel_shape') ?? [kh, kw];
    const strides = intsAttr(node, 'strides') ?? [1, 1];
    const dilations = intsAttr(node, 'dilations') ?? [1, 1];
    if (strides.some((s) => s > 1) && dilations.some((d) => d > 1)) {
      throw new Error('tfjs convolutions cannot combine strides > 1 with dilations > 1');
    }
    // tfjs convolves NHWC images with HWIO filters (the layout its wasm kernels run fastest).
    const nhwc = tf.transpose(x, [0, 2, 3, 1]) as tf.Tensor4D;
    const pad = convPadding(node, x as tf.Tensor4D, kernel, strides, dilations);
    const bias = inputs[2] as tf.Tensor1D | undefined;
    const stride: [number, number] = [strides[0], strides[1]];
    const dilation: [number, number] = [dilations[0], dilations[1]];
    let y: tf.Tensor4D;
    if (!depthwise) {
      y = tf.fused.conv2d({ x: nhwc, filter, strides: stride, pad, dilations: dilation, bias });
    } else {
      // tfjs's depthwise convolution takes no explicit padding: pad the image, then convolve without.
      const padded = Array.isArray(pad) ? tf.pad(nhwc, pad) : nhwc;
      y = tf.fused.depthwiseConv2d({ x: padded, filter, strides: stride, pad: Array.isArray(pad) ? 'valid' : pad, dilations: dilation, bias });
    }
    return tf.transpose(y, [0, 3, 1, 2]);
  },
};

/** ONNX [C * mult, 1, kh, kw] (output channel c * mult + m) as tfjs's depthwise [kh, kw, C, mult]. */
export function depthwiseFilter(w: tf.Tensor, group: number): tf.Tensor {
  const [out, , kh, kw] = w.shape;
  return tf.transpose(tf.reshape(w, [group, out / group, kh, kw]), [2, 3, 0, 1]);
}

const reshape: OpDef = {
  run(inputs, ctx) {
    const x = required(inputs, 0, 'data');
    const shape = hostInts(required(inputs, 1, 'shape'));
    const allowZero = intAttr(ctx.node, 'allowzero', 0) !== 0;
    const target = shape.map((d, i) => {
      if (d !== 0 || allowZero) return d;
      if (i >= x.rank) throw new Error(`shape entry ${i} is 0 (copy) but the input has rank ${x.rank}`);
      return x.shape[i];
    });
    return tf.reshape(x, target);
  },
};

const transpose: OpDef = {
  run(inputs, ctx) {
    const x = required(inputs, 0, 'data');
    const perm = intsAttr(ctx.node, 'perm') ?? x.shape.map((_, i) => x.rank - 1 - i);
    return tf.transpose(x, perm);
  },
};

const concat: OpDef = {
  run(inputs, ctx) {
    const tensors = inputs.filter((t): t is tf.Tensor => t !== undefined);
    if (tensors.length === 0) throw new Error('no inputs');
    if (!ctx.node.attributes.has('axis')) throw new Error('attribute axis is required');
    const axis = normAxis(intAttr(ctx.node, 'axis', 0), tensors[0].rank);
    return tensors.length === 1 ? tensors[0].clone() : tf.concat(tensors, axis);
  },
};

const expand: OpDef = {
  run(inputs) {
    const x = required(inputs, 0, 'input');
    const shape = broadcastShapes(x.shape, hostInts(required(inputs, 1, 'shape')));
    const lifted = x.rank === shape.length ? x : tf.reshape(x, [...new Array(shape.length - x.rank).fill(1), ...x.shape]);
    return tf.broadcastTo(lifted, shape);
  },
};

const shapeOp: OpDef = {
  run(inputs, ctx) {
    const x = required(inputs, 0, 'data');
    const rank = x.rank;
    const clampIndex = (i: number) => Math.min(rank, Math.max(0, i < 0 ? i + rank : i));
    const start = clampIndex(intAttr(ctx.node, 'start', 0));
    const end = clampIndex(intAttr(ctx.node, 'end', rank));
    return tf.tensor1d(x.shape.slice(start, Math.max(start, end)), 'int32');
  },
};

const gather: OpDef = {
  run(inputs, ctx) {
    const x = required(inputs, 0, 'data');
    const indices = required(inputs, 1, 'indices');
    const axis = normAxis(intAttr(ctx.node, 'axis', 0), x.rank);
    const size = x.shape[axis];
    const values = hostInts(indices).map((i) => {
      if (i < -size || i >= size) throw new Error(`index ${i} is out of range for axis ${axis} of size ${size}`);
      return i < 0 ? i + size : i;
    });
    return tf.gather(x, tf.tensor(values, indices.shape, 'int32'), axis);
  },
};

const slice: OpDef = {
  run(inputs, ctx) {
    const x = required(inputs, 0, 'data');
    let starts: number[];
    let ends: number[];
    let axes: number[] | undefined;
    let steps: number[] | undefined;
    if (ctx.opset < 10) {
      starts = intsAttr(ctx.node, 'starts') ?? [];
      ends = intsAttr(ctx.node, 'ends') ?? [];
      axes = intsAttr(ctx.node, 'axes');
    } else {
      starts = hostInts(required(inputs, 1, 'starts'));
      ends = hostInts(required(inputs, 2, 'ends'));
      axes = inputs[3] === undefined ? undefined : hostInts(inputs[3]);
      steps = inputs[4] === undefined ? undefined : hostInts(inputs[4]);
    }
    const begin = x.shape.map(() => 0);
    const end = [...x.shape];
    const stride = x.shape.map(() => 1);
    let endMask = 0;
    for (let k = 0; k < starts.length; k++) {
      const axis = normAxis(axes?.[k] ?? k, x.rank);
      const dim = x.shape[axis];
      const step = steps?.[k] ?? 1;
      if (step === 0) throw new Error('slice steps must not be 0');
      const resolve = (v: number) => (v < 0 ? v + dim : v);
      if (step > 0) {
        begin[axis] = Math.min(dim, Math.max(0, resolve(starts[k])));
        end[axis] = Math.min(dim, Math.max(0, resolve(ends[k])));
      } else {
        begin[axis] = Math.min(dim - 1, Math.max(-1, resolve(starts[k])));
        const e = Math.min(dim - 1, Math.max(-1, resolve(ends[k])));
        // An end before element 0 cannot be written as an index in tf (-1 would mean the last element).
        if (e === -1) endMask |= 1 << axis;
        end[axis] = e;
      }
      stride[axis] = step;
    }
    if (stride.every((s) => s === 1)) {
      return tf.slice(x, begin, end.map((e, i) => Math.max(0, e - begin[i])));
    }
    return tf.stridedSlice(x, begin, end, stride, 0, endMask);
  },
};

const unsqueeze: OpDef = {
  run(inputs, ctx) {
    const x = required(inputs, 0, 'data');
    const axes = axesOf(inputs, 1, ctx.node);
    if (!axes) throw new Error('axes are required');
    const rank = x.rank + axes.length;
    const at = new Set(axes.map((a) => normAxis(a, rank)));
    const shape: number[] = [];
    let k = 0;
    for (let i = 0; i < rank; i++) shape.push(at.has(i) ? 1 : x.shape[k++]);
    return tf.reshape(x, shape);
  },
};

const squeeze: OpDef = {
  run(inputs, ctx) {
    const x = required(inputs, 0, 'data');
    const axes = axesOf(inputs, 1, ctx.node);
    const drop = new Set(axes === undefined ? x.shape.flatMap((d, i) => (d === 1 ? [i] : [])) : axes.map((a) => normAxis(a, x.rank)));
    for (const a of drop) if (x.shape[a] !== 1) throw new Error(`cannot squeeze axis ${a} of size ${x.shape[a]}`);
    return tf.reshape(x, x.shape.filter((_, i) => !drop.has(i)));
  },
};

const flatten: OpDef = {
  run(inputs, ctx) {
    const x = required(inputs, 0, 'input');
    const axis = intAttr(ctx.node, 'axis', 1);
    const at = axis < 0 ? axis + x.rank : axis;
    if (at < 0 || at > x.rank) throw new Error(`axis ${axis} is out of range for rank ${x.rank}`);
    const outer = x.shape.slice(0, at).reduce((a, b) => a * b, 1);
    return tf.reshape(x, [outer, -1]);
  },
};

function softmaxAlong(x: tf.Tensor, axis: number, log: boolean): tf.Tensor {
  const f = (t: tf.Tensor) => (log ? tf.logSoftmax(t) : tf.softmax(t));
  if (axis === x.rank - 1) return f(x);
  // tfjs normalises over the last axis only.
  const perm = x.shape.map((_, i) => i);
  perm[axis] = x.rank - 1;
  perm[x.rank - 1] = axis;
  return tf.transpose(f(tf.transpose(x, perm)), perm);
}

const softmax = (log: boolean): OpDef => ({
  run(inputs, ctx) {
    const x = required(inputs, 0, 'input');
    if (ctx.opset < 13) {
      // Before opset 13 the input is coerced to 2-D at `axis` (default 1) and normalised per row.
      const axis = intAttr(ctx.node, 'axis', 1);
      const at = axis < 0 ? axis + x.rank : axis;
      const outer = x.shape.slice(0, at).reduce((a, b) => a * b, 1);
      return tf.reshape(softmaxAlong(tf.reshape(x, [outer, -1]), 1, log), x.shape);
    }
    return softmaxAlong(x, normAxis(intAttr(ctx.node, 'axis', -1), x.rank), log);
  },
});

const layerNormalization: OpDef = {
  run(inputs, ctx) {
    const x = required(inputs, 0, 'X');
    const scale = required(inputs, 1, 'Scale');
    const bias = inputs[2];
    const axis = normAxis(intAttr(ctx.node, 'axis', -1), x.rank);
    const epsilon = floatAttr(ctx.node, 'epsilon', 1e-5);
    const axes = x.shape.slice(axis).map((_, i) => axis + i);
    const mean = tf.mean(x, axes, true);
    const centered = tf.sub(x, mean);
    const variance = tf.mean(tf.square(centered), axes, true);
    const invStd = tf.rsqrt(tf.add(variance, epsilon));
    const normalised = tf.mul(tf.mul(centered, invStd), scale);
    const y = bias === undefined ? normalised : tf.add(normalised, bias);
    return [y, mean, invStd];
  },
};

type Reducer = (x: tf.Tensor, axes: number[], keepDims: boolean) => tf.Tensor;

function reduce(f: Reducer, axesAsInputFrom: number): OpDef {
  return {
    run(inputs, ctx) {
      const x = required(inputs, 0, 'data');
      const keepDims = intAttr(ctx.node, 'keepdims', 1) !== 0;
      const axes = ctx.opset >= axesAsInputFrom ? (inputs[1] === undefined ? undefined : hostInts(inputs[1])) : intsAttr(ctx.node, 'axes');
      if (axes === undefined || axes.length === 0) {
        if (intAttr(ctx.node, 'noop_with_empty_axes', 0)) return x.clone();
        return f(x, x.shape.map((_, i) => i), keepDims);
      }
      return f(x, axes.map((a) => normAxis(a, x.rank)), keepDims);
    },
  };
}

function constantTensor(value: HostTensor): tf.Tensor {
  return tf.tensor(value.data, value.dims, value.dtype);
}

const constant: OpDef = {
  run(_inputs, ctx) {
    const { node } = ctx;
    const [key, value] = [...node.attributes.entries()][0] ?? [];
    switch (key) {
      case 'value':
        return constantTensor(value as HostTensor);
      case 'value_float':
        return tf.scalar(value as number, 'float32');
      case 'value_floats':
        return tf.tensor1d(value as number[], 'float32');
      case 'value_int':
        return tf.scalar(value as number, 'int32');
      case 'value_ints':
        return tf.tensor1d(value as number[], 'int32');
      default:
        throw new Error(`a Constant needs one of value, value_float(s), value_int(s); got ${key ?? 'no attribute'}`);
    }
  },
};

const constantOfShape: OpDef = {
  run(inputs, ctx) {
    const shape = hostInts(required(inputs, 0, 'input'));
    const value = ctx.node.attributes.get('value') as HostTensor | undefined;
    if (value === undefined) return tf.zeros(shape, 'float32');
    return tf.fill(shape, value.data[0], value.dtype === 'bool' ? 'bool' : value.dtype);
  },
};

const CAST_TARGETS: Record<number, 'float32' | 'int32' | 'bool'> = { 1: 'float32', 2: 'int32', 3: 'int32', 4: 'int32', 5: 'int32', 6: 'int32', 7: 'int32', 9: 'bool' };

const cast: OpDef = {
  run(inputs, ctx) {
    if (!ctx.node.attributes.has('to')) throw new Error('attribute to is required');
    const to = intAttr(ctx.node, 'to', 0);
    const dtype = CAST_TARGETS[to];
    if (dtype === undefined) throw new Error(`cast to ONNX element type ${to} is not supported by tfjs (float32, integers as int32, bool)`);
    const x = required(inputs, 0, 'input');
    if (x.dtype === dtype) return x.clone();
    // ONNX's bool is "nonzero"; tfjs's cast to bool keeps the low byte of the truncated value (2.7 -> 2, 0.5 -> 0).
    if (dtype === 'bool') return tf.notEqual(x, tf.scalar(0, x.dtype));
    return tf.cast(x, dtype);
  },
};

const split: OpDef = {
  run(inputs, ctx) {
    const x = required(inputs, 0, 'input');
    const axis = normAxis(intAttr(ctx.node, 'axis', 0), x.rank);
    const count = ctx.node.outputs.length;
    const sizes = inputs[1] !== undefined ? hostInts(inputs[1]) : intsAttr(ctx.node, 'split');
    if (sizes) return tf.split(x, sizes, axis);
    const dim = x.shape[axis];
    // Opset 18 allows an uneven split: every part ceil(dim / count), the last one smaller.
    const part = Math.ceil(dim / count);
    const parts = Array.from({ length: count }, (_, i) => Math.max(0, Math.min(part, dim - i * part)));
    return tf.split(x, parts, axis);
  },
};

const where: OpDef = {
  run(inputs) {
    const condition = required(inputs, 0, 'condition');
    const a = required(inputs, 1, 'X');
    const b = required(inputs, 2, 'Y');
    const shape = broadcastShapes(broadcastShapes(condition.shape, a.shape), b.shape);
    const to = (t: tf.Tensor) => (t.shape.join() === shape.join() ? t : tf.broadcastTo(t.rank === shape.length ? t : tf.reshape(t, [...new Array(shape.length - t.rank).fill(1), ...t.shape]), shape));
    return tf.where(to(condition), to(a), to(b));
  },
};

const pow: OpDef = {
  run(inputs) {
    const x = required(inputs, 0, 'X');
    const y = required(inputs, 1, 'Y');
    if (y.size === 1 && y.rank <= x.rank && x.dtype === 'float32') {
      // Squares and square roots are common (variances, norms) and exact in their own kernels; a one-element
      // exponent of no higher rank leaves the shape as it is.
      const e = y.dataSync()[0];
      if (e === 2) return tf.square(x);
      if (e === 1) return x.clone();
      if (e === 0.5) return tf.sqrt(x);
    }
    return tf.pow(x, y);
  },
};

/** Every supported operator of the default domain, by op type. */
export const OPS: ReadonlyMap<string, OpDef> = new Map<string, OpDef>([
  ['Add', binary(tf.add)],
  ['Sub', binary(tf.sub)],
  ['Mul', binary(tf.mul)],
  ['Div', binary((a, b) => (a.dtype === 'int32' && b.dtype === 'int32' ? integerDiv(a, b) : tf.div(a, b)))],
  ['Pow', pow],
  ['Sqrt', unary(tf.sqrt)],
  ['Reciprocal', unary(tf.reciprocal)],
  ['Erf', unary(tf.erf)],
  ['Exp', unary(tf.exp)],
  ['Log', unary(tf.log)],
  ['Neg', unary(tf.neg)],
  ['Abs', unary(tf.abs)],
  ['Floor', unary(tf.floor)],
  ['Ceil', unary(tf.ceil)],
  ['Relu', unary(tf.relu)],
  ['Sigmoid', unary(tf.sigmoid)],
  ['Tanh', unary(tf.tanh)],
  ['Identity', unary((x) => x.clone())],
  ['MatMul', binary(matMul)],
  ['Gemm', gemm],
  ['Conv', conv],
  ['Reshape', reshape],
  ['Transpose', transpose],
  ['Concat', concat],
  ['Expand', expand],
  ['Shape', shapeOp],
  ['Size', unary((x) => tf.scalar(x.size, 'int32'))],
  ['Gather', gather],
  ['Slice', slice],
  ['Unsqueeze', unsqueeze],
  ['Squeeze', squeeze],
  ['Flatten', flatten],
  ['Softmax', softmax(false)],
  ['LogSoftmax', softmax(true)],
  ['LayerNormalization', layerNormalization],
  ['ReduceMean', reduce((x, axes, keep) => tf.mean(x, axes, keep), 18)],
  ['ReduceSum', reduce((x, axes, keep) => tf.sum(x, axes, keep), 13)],
  ['ReduceMax', reduce((x, axes, keep) => tf.max(x, axes, keep), 18)],
  ['ReduceMin', reduce((x, axes, keep) => tf.min(x, axes, keep), 18)],
  ['Constant', constant],
  ['ConstantOfShape', constantOfShape],
  ['Cast', cast],
  ['Split', split],
  ['Where', where],
]);
