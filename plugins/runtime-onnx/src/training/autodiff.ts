// A tiny reverse-mode differentiator over `OnnxGraph`: each op method appends the forward node and records which
// gradient rule (grad-rules.ts) undoes it; `backward` replays the record in reverse, appending the backward nodes to
// the same graph, so forward and backward run in one onnxruntime session and share the forward activations.
import type { OnnxGraph } from '@transformaly/core';
import { onnxAttr } from '@transformaly/core';
import {
  addGrad,
  broadcastShapes,
  gemmGrad,
  geluErfGrad,
  layerNormGrad,
  matMulGrad,
  mulGrad,
  reduceMeanGrad,
  reshapeGrad,
  softmaxGrad,
  splitGrad,
  subGrad,
  transposeGrad,
  emitMatMul,
  type GemmAttributes,
  type MatMulOptions,
  type Operand,
  type Shape,
} from './grad-rules.js';

/** A value of the forward graph. `requiresGrad` is true for differentiable inputs and for everything computed from one. */
export interface Var extends Operand {
  readonly requiresGrad: boolean;
}

interface Entry {
  inputs: readonly Var[];
  outputs: readonly Var[];
  /** Input gradients (undefined where not needed) from the output gradients (undefined where none flowed). */
  backward(dOutputs: readonly (string | undefined)[], need: readonly boolean[]): readonly (string | undefined)[];
}

export class Tape {
  private readonly entries: Entry[] = [];
  private symbols = 0;

  /** With `fusedMatMul`, transposed and scaled products use onnxruntime's FusedMatMul (com.microsoft domain). */
  readonly fusedMatMul: boolean;

  constructor(
    readonly graph: OnnxGraph,
    options: { fusedMatMul?: boolean } = {},
  ) {
    this.fusedMatMul = options.fusedMatMul ?? false;
  }

  /** Declares a float32 graph input. */
  input(name: string, shape: Shape, requiresGrad: boolean): Var {
    this.graph.input(name, 'float32', shape);
    return { name, shape, requiresGrad };
  }

  /** A value that needs no gradient (a constant, or a graph value computed outside the tape). */
  constant(name: string, shape: Shape): Var {
    return { name, shape, requiresGrad: false };
  }

  private record(inputs: readonly Var[], outputs: Var[], backward: Entry['backward']): void {
    if (inputs.some((v) => v.requiresGrad)) this.entries.push({ inputs, outputs, backward });
  }

  private result(name: string, shape: Shape, inputs: readonly Var[]): Var {
    return { name, shape, requiresGrad: inputs.some((v) => v.requiresGrad) };
  }

  add(a: Var, b: Var, name?: string): Var {
    const y = this.result(this.graph.op('Add', [a.name, b.name], {}, { output: name }), broadcastShapes(a.shape, b.shape), [a, b]);
    this.record([a, b], [y], ([dy], need) => addGrad(this.graph, dy!, y.shape, a, b, need));
    return y;
  }

  sub(a: Var, b: Var, name?: string): Var {
    const y = this.result(this.graph.op('Sub', [a.name, b.name], {}, { output: name }), broadcastShapes(a.shape, b.shape), [a, b]);
    this.record([a, b], [y], ([dy], need) => subGrad(this.graph, dy!, y.shape, a, b, need));
    return y;
  }

  mul(a: Var, b: Var, name?: string): Var {
    const y = this.result(this.graph.op('Mul', [a.name, b.name], {}, { output: name }), broadcastShapes(a.shape, b.shape), [a, b]);
    this.record([a, b], [y], ([dy], need) => mulGrad(this.graph, dy!, y.shape, a, b, need));
    return y;
  }

  /** x times a constant scalar. */
  scale(x: Var, factor: number, name?: string): Var {
    return this.mul(x, this.constant(this.graph.scalar(factor), []), name);
  }

  /**
   * alpha * op(a) @ op(b) with MatMul semantics (op transposes the last two axes when flagged). Emitted as one
   * FusedMatMul when the tape was created with `fusedMatMul`, else as standard ONNX nodes.
   */
  matMul(a: Var, b: Var, name?: string, options: MatMulOptions = {}): Var {
    if (a.shape.length < 2 || b.shape.length < 2) throw new Error('Tape.matMul: operands must have rank >= 2');
    const last2 = (v: Var, flag: boolean | undefined) => {
      const [r, c] = v.shape.slice(-2);
      return flag ? [c, r] : [r, c];
    };
    const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2));
    const shape = [...batch, last2(a, options.transA)[0], last2(b, options.transB)[1]];
    const out = emitMatMul(this.graph, a, b, options, this.fusedMatMul, name);
    const y = this.result(out, shape, [a, b]);
    this.record([a, b], [y], ([dy], need) => matMulGrad(this.graph, dy!, y.shape, a, b, need, options, this.fusedMatMul));
    return y;
  }

  /** ONNX Gemm on 2-D operands: alpha * A' @ B' + beta * C. */
  gemm(a: Var, b: Var, c: Var | undefined, attrs: GemmAttributes = {}, name?: string): Var {
    if (a.shape.length !== 2 || b.shape.length !== 2) throw new Error('Tape.gemm: A and B must be 2-D');
    const attributes: Record<string, number | { kind: 'float'; value: number }> = {};
    if (attrs.transA) attributes.transA = 1;
    if (attrs.transB) attributes.transB = 1;
    if (attrs.alpha !== undefined && attrs.alpha !== 1) attributes.alpha = onnxAttr.float(attrs.alpha);
    if (attrs.beta !== undefined && attrs.beta !== 1) attributes.beta = onnxAttr.float(attrs.beta);
    const inputs = c ? [a, b, c] : [a, b];
    const shape = [attrs.transA ? a.shape[1] : a.shape[0], attrs.transB ? b.shape[0] : b.shape[1]];
    const y = this.result(this.graph.op('Gemm', inputs.map((v) => v.name), attributes, { output: name }), shape, inputs);
    this.record(inputs, [y], ([dy], need) => gemmGrad(this.graph, dy!, a, b, c, attrs, need));
    return y;
  }

  /** LayerNormalization over the last axis (opset 17); its Mean and InvStdDev outputs feed the backward rule. */
  layerNorm(x: Var, scale: Var, bias: Var, epsilon: number, name?: string): Var {
    const [out, mean, invStdDev] = this.graph.node(
      'LayerNormalization',
      [x.name, scale.name, bias.name],
      [name ?? this.graph.fresh('LayerNorm'), this.graph.fresh('LayerNorm_mean'), this.graph.fresh('LayerNorm_invstd')],
      { axis: -1, epsilon: onnxAttr.float(epsilon) },
    );
    const y = this.result(out, x.shape, [x, scale, bias]);
    this.record([x, scale, bias], [y], ([dy], need) => layerNormGrad(this.graph, dy!, x, scale.name, mean, invStdDev, need));
    return y;
  }

  softmax(x: Var, axis = -1, name?: string): Var {
    const y = this.result(this.graph.op('Softmax', [x.name], { axis }, { output: name }), x.shape, [x]);
    this.record([x], [y], ([dy]) => [softmaxGrad(this.graph, dy!, y.name, axis)]);
    return y;
  }

  /**
   * GELU with the exact normal CDF, x * 0.5 * (1 + erf(x / sqrt(2))), written in the pattern onnxruntime fuses into one
   * Gelu kernel.
   */
  geluErf(x: Var, name?: string): Var {
    const g = this.graph;
    const erf = g.op('Erf', [g.op('Div', [x.name, g.scalar(Math.SQRT2)])]);
    const out = g.op('Mul', [g.op('Mul', [x.name, g.op('Add', [erf, g.scalar(1)])]), g.scalar(0.5)], {}, { output: name });
    const y = this.result(out, x.shape, [x]);
    this.record([x], [y], ([dy]) => [geluErfGrad(this.graph, dy!, x.name)]);
    return y;
  }

  /** Reshape to `shape`; at most one -1, no 0 (copy) entries. */
  reshape(x: Var, shape: readonly number[], name?: string): Var {
    if (shape.some((d) => d === 0 || d < -1) || shape.filter((d) => d === -1).length > 1) {
      throw new Error(`Tape.reshape: target [${shape.join(', ')}] must hold positive sizes and at most one -1`);
    }
    const out = this.graph.op('Reshape', [x.name, this.graph.int64s(shape, 'shape')], {}, { output: name });
    const y = this.result(out, this.inferReshape(x.shape, shape), [x]);
    this.record([x], [y], ([dy]) => [reshapeGrad(this.graph, dy!, x)]);
    return y;
  }

  transpose(x: Var, perm: readonly number[], name?: string): Var {
    if (perm.length !== x.shape.length) throw new Error(`Tape.transpose: perm [${perm.join(', ')}] does not match rank ${x.shape.length}`);
    const out = this.graph.op('Transpose', [x.name], { perm: [...perm] }, { output: name });
    const y = this.result(
      out,
      perm.map((p) => x.shape[p]),
      [x],
    );
    this.record([x], [y], ([dy]) => [transposeGrad(this.graph, dy!, perm)]);
    return y;
  }

  /** ReduceMean over `axes` (opset 17 attribute form). Reduce few axes at a time: float32 sums of millions of values drift. */
  reduceMean(x: Var, axes: readonly number[], keepdims: boolean, name?: string): Var {
    const rank = x.shape.length;
    const reduced = new Set(axes.map((a) => (a < 0 ? a + rank : a)));
    const shape = keepdims ? x.shape.map((d, i) => (reduced.has(i) ? 1 : d)) : x.shape.filter((_, i) => !reduced.has(i));
    const out = this.graph.op('ReduceMean', [x.name], { axes: [...axes], keepdims: keepdims ? 1 : 0 }, { output: name });
    const y = this.result(out, shape, [x]);
    this.record([x], [y], ([dy]) => [reduceMeanGrad(this.graph, dy!, x, y, axes, keepdims)]);
    return y;
  }

  /** Split along `axis` (static sizes) into parts. */
  split(x: Var, axis: number, sizes: readonly number[], names?: readonly string[]): Var[] {
    const rank = x.shape.length;
    const a = axis < 0 ? axis + rank : axis;
    const outs = this.graph.node(
      'Split',
      [x.name, this.graph.int64s(sizes, 'split')],
      names ?? sizes.map(() => this.graph.fresh('Split')),
      { axis: a },
    );
    const parts = outs.map((name, i) => this.result(name, x.shape.map((d, j) => (j === a ? sizes[i] : d)), [x]));
    this.record([x], parts, (dys) => [splitGrad(this.graph, dys, parts, a)]);
    return parts;
  }

  /**
   * Appends the backward pass. `outputs` is a scalar loss (its gradient seeded with 1) or a list of outputs with the
   * graph values holding their gradients. Returns the gradient of every requested input; inputs the outputs do not
   * depend on get zeros.
   */
  backward(outputs: Var | ReadonlyArray<{ output: Var; gradient: string }>, wrt: readonly Var[]): Map<string, string> {
    const g = this.graph;
    const grads = new Map<string, string>();
    if ('name' in outputs) {
      if (outputs.shape.length !== 0) throw new Error(`Tape.backward: "${outputs.name}" is not a scalar; pass its gradient`);
      grads.set(outputs.name, g.scalar(1, 'float32', 'seed'));
    } else {
      for (const { output, gradient } of outputs) grads.set(output.name, gradient);
    }
    for (let i = this.entries.length - 1; i >= 0; i--) {
      const entry = this.entries[i];
      const dOutputs = entry.outputs.map((o) => grads.get(o.name));
      if (dOutputs.every((d) => d === undefined)) continue;
      const need = entry.inputs.map((v) => v.requiresGrad);
      const dInputs = entry.backward(dOutputs, need);
      entry.inputs.forEach((v, j) => {
        const d = dInputs[j];
        if (!v.requiresGrad || d === undefined) return;
        const previous = grads.get(v.name);
        grads.set(v.name, previous === undefined ? d : g.op('Add', [previous, d]));
      });
    }
    const result = new Map<string, string>();
    for (const v of wrt) {
      const d = grads.get(v.name);
      const zero = onnxAttr.tensor({ dims: [1], data: Float32Array.of(0) });
      result.set(v.name, d ?? g.op('ConstantOfShape', [g.op('Shape', [v.name])], { value: zero }));
    }
    return result;
  }

  private inferReshape(from: Shape, to: readonly number[]): Shape {
    const minus = to.indexOf(-1);
    if (minus < 0) return to;
    const known = to.reduce((p, d) => (d === -1 ? p : p * d), 1);
    if (from.every((d) => typeof d === 'number')) {
      const total = (from as number[]).reduce((p, d) => p * d, 1);
      if (total % known !== 0) throw new Error(`Tape.reshape: [${from.join(', ')}] cannot be reshaped to [${to.join(', ')}]`);
      return to.map((d) => (d === -1 ? total / known : d));
    }
    // The inferred size depends on a run-time dimension: give it a fresh symbol.
    return to.map((d) => (d === -1 ? `reshaped_${this.symbols++}` : d));
  }
}
