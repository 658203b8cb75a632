// Every gradient rule of the onnxruntime training engine against torch autograd (float64 golden files written by
// scripts/golden/torch_training.py): a one-op graph on the tape, its backward from a given output gradient, run by
// onnxruntime with every optimisation on and off, and with static as well as run-time (symbolic) leading dimensions.
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { OnnxGraph, readSafetensors, serializeOnnxModel } from '@transformaly/core';
import type { ArrayEntry } from '@transformaly/core';
import { STUDENT_OPSET_IMPORTS, Tape, type Var } from '../plugins/runtime-onnx/src/training/index.js';
import { expectClose } from './fixtures/close.js';

const GOLDEN = join(import.meta.dirname, 'golden', 'training', 'ops.safetensors');

interface OpCase {
  name: string;
  op: string;
  inputs: string[];
  attrs: Record<string, number | number[]>;
  outputs: number;
}

const golden = await readSafetensors(GOLDEN);
const cases = JSON.parse(golden.metadata.cases) as OpCase[];

function array(name: string): ArrayEntry {
  const entry = golden.arrays[name];
  if (entry === undefined) throw new Error(`${GOLDEN}: no tensor "${name}"`);
  return entry;
}

/** The forward op of a case, on the tape. */
function apply(tape: Tape, c: OpCase, inputs: Var[]): Var[] {
  const a = c.attrs;
  switch (c.op) {
    case 'MatMul':
      return [tape.matMul(inputs[0], inputs[1], undefined, { transA: a.transA === 1, transB: a.transB === 1, alpha: a.alpha as number | undefined })];
    case 'Gemm':
      return [
        tape.gemm(inputs[0], inputs[1], inputs[2], {
          transA: a.transA as number | undefined,
          transB: a.transB as number | undefined,
          alpha: a.alpha as number | undefined,
          beta: a.beta as number | undefined,
        }),
      ];
    case 'Add':
      return [tape.add(inputs[0], inputs[1])];
    case 'Sub':
      return [tape.sub(inputs[0], inputs[1])];
    case 'Mul':
      return [tape.mul(inputs[0], inputs[1])];
    case 'Square':
      return [tape.mul(inputs[0], inputs[0])];
    case 'LayerNormalization':
      return [tape.layerNorm(inputs[0], inputs[1], inputs[2], a.epsilon as number)];
    case 'Softmax':
      return [tape.softmax(inputs[0], a.axis as number)];
    case 'GeluErf':
      return [tape.geluErf(inputs[0])];
    case 'Reshape':
      return [tape.reshape(inputs[0], a.shape as number[])];
    case 'Transpose':
      return [tape.transpose(inputs[0], a.perm as number[])];
    case 'ReduceMean':
      return [tape.reduceMean(inputs[0], a.axes as number[], a.keepdims === 1)];
    case 'Split':
      return tape.split(inputs[0], a.axis as number, a.split as number[]);
    default:
      throw new Error(`golden case ${c.name}: unknown op ${c.op}`);
  }
}

type Mode = 'static' | 'symbolic';

/**
 * Builds forward + backward for one case; in `symbolic` mode each input's first dimension (unless 1) is a run-time
 * size; `fused` lets the tape emit onnxruntime's FusedMatMul for transposed or scaled products.
 */
async function runCase(c: OpCase, mode: Mode, level: 'all' | 'disabled', fused: boolean): Promise<Record<string, Float32Array>> {
  const graph = new OnnxGraph(c.name);
  const tape = new Tape(graph, { fusedMatMul: fused });
  const feeds: Record<string, ort.Tensor> = {};
  const inputs = c.inputs.map((name) => {
    const { dims, data } = array(`${c.name}/${name}`);
    feeds[name] = new ort.Tensor('float32', Float32Array.from(data as Float64Array), dims);
    const shape = mode === 'symbolic' && dims.length > 0 && dims[0] !== 1 ? [`${name}_rows`, ...dims.slice(1)] : dims;
    return tape.input(name, shape, true);
  });
  const outputs = apply(tape, c, inputs);
  const suffix = (i: number) => (c.outputs > 1 ? String(i) : '');
  const seeds = outputs.map((output, i) => {
    const { dims, data } = array(`${c.name}/dy${suffix(i)}`);
    const gradient = `dy${suffix(i)}`;
    graph.input(gradient, 'float32', dims);
    feeds[gradient] = new ort.Tensor('float32', Float32Array.from(data as Float64Array), dims);
    return { output, gradient };
  });
  const grads = tape.backward(seeds, inputs);
  const fetch: Record<string, string> = {};
  outputs.forEach((o, i) => {
    graph.output(o.name, 'float32');
    fetch[`y${suffix(i)}`] = o.name;
  });
  for (const v of inputs) {
    const grad = grads.get(v.name)!;
    // A gradient can be the seed itself (a graph input) or shared by two inputs (Add); give each its own output.
    const named = graph.op('Identity', [grad], {}, { output: `grad_${v.name}` });
    graph.output(named, 'float32');
    fetch[`grad/${v.name}`] = named;
  }
  const model = await serializeOnnxModel(graph, { opsetImports: { ...STUDENT_OPSET_IMPORTS } });
  const session = await ort.InferenceSession.create(model.bytes, { graphOptimizationLevel: level, intraOpNumThreads: 1 });
  try {
    const result = await session.run(feeds);
    const out: Record<string, Float32Array> = {};
    for (const [key, name] of Object.entries(fetch)) out[key] = result[name].data as Float32Array;
    return out;
  } finally {
    await session.release();
  }
}

describe('gradient rules match torch autograd', () => {
  it('covers every rule the student block uses', () => {
    const ops = new Set(cases.map((c) => c.op));
    for (const op of ['MatMul', 'Gemm', 'Add', 'Sub', 'Mul', 'LayerNormalization', 'Softmax', 'GeluErf', 'Reshape', 'Transpose', 'ReduceMean', 'Split']) {
      expect(ops.has(op), op).toBe(true);
    }
  });

  for (const c of cases) {
    for (const mode of ['static', 'symbolic'] as const) {
      for (const level of ['all', 'disabled'] as const) {
        for (const fused of c.op === 'MatMul' ? [false, true] : [false]) {
          it(`${c.name} (${c.op}, ${mode} shapes, optimisation ${level}${fused ? ', FusedMatMul' : ''})`, async () => {
            const out = await runCase(c, mode, level, fused);
            for (let i = 0; i < c.outputs; i++) {
              const key = c.outputs > 1 ? `y${i}` : 'y';
              expectClose(out[key], array(`${c.name}/${key}`).data, 1e-5, `${c.name} forward ${key}`);
            }
            for (const name of c.inputs) {
              expectClose(out[`grad/${name}`], array(`${c.name}/grad/${name}`).data, 1e-4, `${c.name} d/d${name}`);
            }
          });
        }
      }
    }
  }
});

describe('Tape', () => {
  it('gives zeros for inputs the output does not depend on, and rejects a non-scalar loss without a seed', async () => {
    const graph = new OnnxGraph('unused');
    const tape = new Tape(graph);
    const a = tape.input('a', [2, 3], true);
    const b = tape.input('b', ['n', 3], true);
    const y = tape.reduceMean(tape.reduceMean(tape.mul(a, a), [1], false), [0], false);
    expect(() => tape.backward(a, [a])).toThrow(/not a scalar/);
    const grads = tape.backward(y, [a, b]);
    graph.output(grads.get('a')!, 'float32');
    graph.output(grads.get('b')!, 'float32');
    const session = await ort.InferenceSession.create((await serializeOnnxModel(graph)).bytes);
    const av = Float32Array.of(1, -2, 3, 0.5, 4, -1);
    const out = await session.run({
      a: new ort.Tensor('float32', av, [2, 3]),
      b: new ort.Tensor('float32', new Float32Array(12).fill(7), [4, 3]),
    });
    expectClose(out[grads.get('a')!].data as Float32Array, Array.from(av, (v) => (2 * v) / 6), 1e-6, 'd/da');
    const db = out[grads.get('b')!];
    expect(db.dims).toEqual([4, 3]);
    expect(Array.from(db.data as Float32Array)).toEqual(new Array(12).fill(0));
    await session.release();
  });

  it('gives zeros to the parts of a split that receive no gradient, and scales by constants', async () => {
    const graph = new OnnxGraph('split_unused');
    const tape = new Tape(graph);
    const x = tape.input('x', ['n', 9], true);
    const [, middle] = tape.split(x, 1, [2, 3, 4]);
    const tripled = tape.scale(middle, 3);
    const loss = tape.reduceMean(tape.reduceMean(tape.mul(tripled, tripled), [-1], false), [0], false);
    const dx = tape.backward(loss, [x]).get('x')!;
    graph.output(dx, 'float32');
    const session = await ort.InferenceSession.create((await serializeOnnxModel(graph)).bytes);
    const xv = Float32Array.from({ length: 36 }, (_, i) => Math.sin(i + 1));
    const out = (await session.run({ x: new ort.Tensor('float32', xv, [4, 9]) }))[dx];
    expect(out.dims).toEqual([4, 9]);
    // d/dx mean((3 x)^2) over 4 x 3 elements = 18 x / 12 inside the middle part, 0 elsewhere.
    const expected = Array.from(xv, (v, i) => (i % 9 >= 2 && i % 9 < 5 ? (18 * v) / 12 : 0));
    expectClose(out.data as Float32Array, expected, 1e-6, 'd/dx');
    await session.release();
  });

  it('rejects reshape targets it cannot differentiate', () => {
    const tape = new Tape(new OnnxGraph('bad'));
    const x = tape.input('x', [2, 6], true);
    expect(() => tape.reshape(x, [0, 6])).toThrow(/positive sizes/);
    expect(() => tape.reshape(x, [-1, -1])).toThrow(/at most one -1/);
    expect(() => tape.reshape(x, [5, -1])).toThrow(/cannot be reshaped/);
  });
});
