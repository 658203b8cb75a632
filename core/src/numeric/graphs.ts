// Tiny ONNX graphs for the numeric engine. Every graph has symbolic dimensions, so one compiled session serves every
// shape of the same operation and element type.
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

import type { FloatType } from '../types.js';

export type { FloatType };

type Dim = number | string;
type AttrValue = number | number[];

const ELEM = {
  float32: onnx.TensorProto.DataType.FLOAT,
  float64: onnx.TensorProto.DataType.DOUBLE,
  int64: onnx.TensorProto.DataType.INT64,
} as const;

type ElemName = keyof typeof ELEM;

function valueInfo(name: string, type: ElemName, dims: Dim[]) {
  return onnx.ValueInfoProto.create({
    name,
    type: {
      tensorType: {
        elemType: ELEM[type],
        shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) },
      },
    },
  });
}

function node(opType: string, input: string[], output: string[], attrs: Record<string, AttrValue> = {}, floatAttrs: Record<string, number> = {}) {
  const attribute = [
    ...Object.entries(attrs).map(([name, v]) =>
      Array.isArray(v)
        ? onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.INTS, ints: v })
        : onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.INT, i: v }),
    ),
    ...Object.entries(floatAttrs).map(([name, f]) => onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.FLOAT, f })),
  ];
  return onnx.NodeProto.create({ opType, input, output, attribute });
}

function encode(name: string, nodes: ReturnType<typeof node>[], inputs: ReturnType<typeof valueInfo>[], outputs: ReturnType<typeof valueInfo>[]): Uint8Array {
  const graph = onnx.GraphProto.create({ name, node: nodes, input: inputs, output: outputs });
  const model = onnx.ModelProto.create({ irVersion: 8, producerName: 'transformaly-numeric', opsetImport: [{ domain: '', version: 17 }], graph });
  return onnx.ModelProto.encode(model).finish();
}

/** Y = op(A) * op(B), op = transpose when requested. */
export function gemmGraph(type: FloatType, transA: boolean, transB: boolean): Uint8Array {
  return encode(
    'gemm',
    [node('Gemm', ['A', 'B'], ['Y'], { transA: transA ? 1 : 0, transB: transB ? 1 : 0 })],
    [valueInfo('A', type, transA ? ['k', 'm'] : ['m', 'k']), valueInfo('B', type, transB ? ['n', 'k'] : ['k', 'n'])],
    [valueInfo('Y', type, ['m', 'n'])],
  );
}

/**
 * S[i, g] = sum_j (X W + C)[i, g * w + j]^2: squared norms of `groups` consecutive column groups of an affine map.
 * With W the concatenated precision Cholesky factors and C = -mu W of each component, these are the Mahalanobis terms
 * of every sample under every component, computed without the [n, groups * w] product leaving the engine.
 * `shape` is [-1, groups, w].
 */
export function groupedSqNormsGraph(type: FloatType): Uint8Array {
  return encode(
    'grouped_sq_norms',
    [node('Gemm', ['X', 'W', 'C'], ['Y']), node('Reshape', ['Y', 'shape'], ['R']), node('ReduceSumSquare', ['R'], ['S'], { axes: [2], keepdims: 0 })],
    [valueInfo('X', type, ['n', 'd']), valueInfo('W', type, ['d', 'm']), valueInfo('C', type, [1, 'm']), valueInfo('shape', 'int64', [3])],
    [valueInfo('S', type, ['n', 'g'])],
  );
}

/** D = Q T^T * (-2) + tn, then the `k` smallest per row (values ascending, with their column indices). */
export function screenTopKGraph(type: FloatType): Uint8Array {
  return encode(
    'screen_topk',
    [
      node('Gemm', ['Q', 'T', 'tn'], ['D'], { transB: 1 }, { alpha: -2, beta: 1 }),
      node('TopK', ['D', 'k'], ['values', 'indices'], { axis: 1, largest: 0, sorted: 1 }),
    ],
    [valueInfo('Q', type, ['m', 'd']), valueInfo('T', type, ['n', 'd']), valueInfo('tn', type, [1, 'n']), valueInfo('k', 'int64', [1])],
    [valueInfo('values', type, ['m', 'kk']), valueInfo('indices', 'int64', ['m', 'kk'])],
  );
}

/** Squared distances max(0, an + bn - 2 A B^T), with an [m, 1] and bn [1, n] the squared row norms. */
export function sqDistGraph(type: FloatType): Uint8Array {
  return encode(
    'sq_dist',
    [node('Gemm', ['A', 'B', 'bn'], ['P'], { transB: 1 }, { alpha: -2, beta: 1 }), node('Add', ['P', 'an'], ['D0']), node('Relu', ['D0'], ['D'])],
    [valueInfo('A', type, ['m', 'd']), valueInfo('B', type, ['n', 'd']), valueInfo('an', type, ['m', 1]), valueInfo('bn', type, [1, 'n'])],
    [valueInfo('D', type, ['m', 'n'])],
  );
}

/**
 * Weighted scatter matrices of K components in one call: Z_k = s_k * (X - m_k) with s_k [n, 1] the square roots of the
 * responsibilities, Y_k = Z_k^T Z_k. X [n, d], M [K, 1, d], S [K, n, 1] -> Y [K, d, d]. The broadcast difference and
 * weighting stay inside the engine.
 */
export function weightedScatterGraph(type: FloatType): Uint8Array {
  return encode(
    'weighted_scatter',
    [
      node('Sub', ['X', 'M'], ['D']),
      node('Mul', ['D', 'S'], ['Z']),
      node('Transpose', ['Z'], ['Zt'], { perm: [0, 2, 1] }),
      node('MatMul', ['Zt', 'Z'], ['Y']),
    ],
    [valueInfo('X', type, ['n', 'd']), valueInfo('M', type, ['K', 1, 'd']), valueInfo('S', type, ['K', 'n', 1])],
    [valueInfo('Y', type, ['K', 'd', 'd'])],
  );
}
