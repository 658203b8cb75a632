// timm's pre-norm ViT block as ONNX nodes with constant weights: the one description used by the backbone's graph
// (plugins/backbone-vit) and by an exported detector's students (core/src/distill/export.ts). The trainable student
// (plugins/runtime-onnx/src/training/student-block.ts) is the same block on the autodiff tape, with its weights as
// graph inputs.
import type { BlockSpec } from '../types.js';
import { onnxAttr, type OnnxGraph } from './graph.js';

/** One linear layer of a block, as a caller builds it (float32 Gemm, or a quantized product). */
export interface VitLinearLayer {
  /** `attn.q`, `attn.k`, `attn.v`, `attn.proj`, `mlp.fc1` or `mlp.fc2`. */
  label: string;
  /** torch layout [outDim, inDim]. */
  weight: Float32Array;
  bias: Float32Array | undefined;
  outDim: number;
  inDim: number;
  /** A factor the layer's output must carry (the attention scale, when it is folded into the query weights). */
  scale: number;
}

export interface VitBlockWeights {
  /** A weight of the block in timm's names within it (`norm1.weight`, `attn.qkv.bias`, ...). */
  tensor(name: string): { dims: readonly number[]; data: Float32Array };
  /** The graph name under which a LayerNorm parameter (`norm1.weight`, ...) is a constant. */
  constant(name: string): string;
  /** `input` [M, inDim] times the layer's weight transposed, plus its bias, times its scale. */
  linear(input: string, layer: VitLinearLayer): string;
}

/** `input [M, inDim] x weight^T + bias` as one Gemm on constants named by `constant(label)`: the float32 linear layer. */
export function gemmLinear(graph: OnnxGraph, constant: (name: string, tensor: { dims: number[]; data: Float32Array }) => string) {
  return (input: string, { label, weight, bias, outDim, inDim, scale }: VitLinearLayer): string => {
    const scaled = (data: Float32Array) => (scale === 1 ? data : data.map((v) => v * scale));
    // torch's [out, in] weights are used as they are (transB): onnxruntime packs constant B operands once at load.
    const w = constant(`${label}.weight`, { dims: [outDim, inDim], data: scaled(weight) });
    if (!bias) return graph.op('Gemm', [input, w], { transB: 1 });
    return graph.op('Gemm', [input, w, constant(`${label}.bias`, { dims: [outDim], data: scaled(bias) })], { transB: 1 });
  };
}

/**
 * Appends one block to `graph`: `rows` is its input as [N * tokens, width], and so is the returned output. Every
 * linear layer is one matrix product on rows; only attention goes through [N, heads, tokens, head] views. GELU is the
 * exact erf form, in the pattern onnxruntime fuses into one kernel.
 *
 * `attentionScale`: `'query'` folds 1/sqrt(head) into the query weights (one product less; the backbone), `'scores'`
 * multiplies the attention scores by it, as the trained student computes, so that an exported student gives its
 * float32 values.
 */
export function appendVitBlock(graph: OnnxGraph, spec: BlockSpec, rows: string, weights: VitBlockWeights, attentionScale: 'query' | 'scores'): string {
  const g = graph;
  const { width: d, heads, tokens, mlpDim: m } = spec;
  const headDim = d / heads;
  const scale = 1 / Math.sqrt(headDim);
  const layerNorm = (input: string, norm: string) =>
    g.op('LayerNormalization', [input, weights.constant(`${norm}.weight`), weights.constant(`${norm}.bias`)], {
      axis: -1,
      epsilon: onnxAttr.float(spec.layerNormEps),
    });
  const linear = (input: string, label: string, weight: Float32Array, bias: Float32Array | undefined, outDim: number, inDim: number, factor = 1) =>
    weights.linear(input, { label, weight, bias, outDim, inDim, scale: factor });

  // Attention: q, k and v from row blocks of the qkv weight, one product each.
  const h = layerNorm(rows, 'norm1');
  const qkvW = weights.tensor('attn.qkv.weight').data;
  const qkvB = spec.qkvBias ? weights.tensor('attn.qkv.bias').data : undefined;
  const [q, k, v] = ['attn.q', 'attn.k', 'attn.v'].map((label, j) =>
    linear(h, label, qkvW.subarray(j * d * d, (j + 1) * d * d), qkvB?.subarray(j * d, (j + 1) * d), d, d, j === 0 && attentionScale === 'query' ? scale : 1),
  );
  const headsShape = g.int64s([-1, tokens, heads, headDim]);
  const split = (value: string, perm: number[]) => g.op('Transpose', [g.op('Reshape', [value, headsShape])], { perm });
  const qh = split(q, [0, 2, 1, 3]); // [N, H, T, hd]
  const kh = split(k, [0, 2, 3, 1]); // [N, H, hd, T]
  const vh = split(v, [0, 2, 1, 3]); // [N, H, T, hd]
  const products = g.op('MatMul', [qh, kh]);
  const scores = attentionScale === 'scores' ? g.op('Mul', [products, g.scalar(scale)]) : products;
  const probs = g.op('Softmax', [scores], { axis: -1 });
  const context = g.op('Reshape', [g.op('Transpose', [g.op('MatMul', [probs, vh])], { perm: [0, 2, 1, 3] }), g.int64s([-1, d])]);
  const proj = weights.tensor('attn.proj.weight').data;
  const x1 = g.op('Add', [rows, linear(context, 'attn.proj', proj, weights.tensor('attn.proj.bias').data, d, d)]);

  // MLP with exact GELU: 0.5 * a * (1 + erf(a / sqrt 2)).
  const a = linear(layerNorm(x1, 'norm2'), 'mlp.fc1', weights.tensor('mlp.fc1.weight').data, weights.tensor('mlp.fc1.bias').data, m, d);
  const erf = g.op('Erf', [g.op('Div', [a, g.scalar(Math.SQRT2)])]);
  const gelu = g.op('Mul', [g.op('Mul', [a, g.op('Add', [erf, g.scalar(1)])]), g.scalar(0.5)]);
  const out = linear(gelu, 'mlp.fc2', weights.tensor('mlp.fc2.weight').data, weights.tensor('mlp.fc2.bias').data, d, m);
  return g.op('Add', [x1, out]);
}
