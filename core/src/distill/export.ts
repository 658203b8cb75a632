// The distiller's part of an exported detector: each student block with its kept weights as constants, and its
// per-image discrepancy to the teacher block. The nodes are those of the onnx runtime's student forward graph
// (plugins/runtime-onnx/src/training/student-block.ts) in their standard-operator form, so that onnxruntime computes
// the same float32 values as when the detector scores.
import { castGraph } from '../export/graph-ops.js';
import { onnxAttr } from '../onnx/graph.js';
import type { BlockSpec, OnnxExportContext, Tensor } from '../types.js';

/**
 * Appends one student block (timm's pre-norm ViT block) and its discrepancy: per image, the mean over tokens and
 * channels of (student(input) - target)^2. `input` and `target` are float32 [N, tokens, width] values; returns a
 * float64 [N] value.
 */
export function studentDiscrepancyGraph(
  ctx: OnnxExportContext,
  spec: BlockSpec,
  weights: Record<string, Tensor>,
  block: number,
  input: string,
  target: string,
): string {
  const g = ctx.graph;
  const { width: D, heads: H, tokens: T } = spec;
  const hd = D / H;
  const weight = (name: string, data: Float32Array = weights[name].data, dims: readonly number[] = weights[name].dims) =>
    ctx.weight(`block${block}.${name}`, { dims, data });
  const rows = (value: string) => g.op('Reshape', [value, g.int64s([-1, D])]);
  const layerNorm = (x: string, norm: string) =>
    g.op('LayerNormalization', [x, weight(`${norm}.weight`), weight(`${norm}.bias`)], { axis: -1, epsilon: onnxAttr.float(spec.layerNormEps) });
  const linear = (x: string, w: string, b: string | undefined) => g.op('Gemm', b === undefined ? [x, w] : [x, w, b], { transB: 1 });

  const x = rows(input);
  const h1 = layerNorm(x, 'norm1');
  // The qkv weight in three row blocks, as the student graph splits it.
  const qkvW = weights['attn.qkv.weight'].data;
  const qkvB = spec.qkvBias ? weights['attn.qkv.bias'].data : undefined;
  const [q, k, v] = ['q', 'k', 'v'].map((part, i) =>
    linear(
      h1,
      weight(`attn.${part}.weight`, qkvW.slice(i * D * D, (i + 1) * D * D), [D, D]),
      qkvB ? weight(`attn.${part}.bias`, qkvB.slice(i * D, (i + 1) * D), [D]) : undefined,
    ),
  );
  const heads = (value: string) => g.op('Transpose', [g.op('Reshape', [value, g.int64s([-1, T, H, hd])])], { perm: [0, 2, 1, 3] });
  const [qh, kh, vh] = [heads(q), heads(k), heads(v)];
  const scores = g.op('Mul', [g.op('MatMul', [qh, g.op('Transpose', [kh], { perm: [0, 1, 3, 2] })]), g.scalar(1 / Math.sqrt(hd))]);
  const attn = g.op('Softmax', [scores], { axis: -1 });
  const context = g.op('Reshape', [g.op('Transpose', [g.op('MatMul', [attn, vh])], { perm: [0, 2, 1, 3] }), g.int64s([-1, D])]);
  const x1 = g.op('Add', [x, linear(context, weight('attn.proj.weight'), weight('attn.proj.bias'))]);
  const a = linear(layerNorm(x1, 'norm2'), weight('mlp.fc1.weight'), weight('mlp.fc1.bias'));
  // Exact GELU, in the pattern onnxruntime fuses: a * (1 + erf(a / sqrt 2)) * 0.5.
  const gelu = g.op('Mul', [g.op('Mul', [a, g.op('Add', [g.op('Erf', [g.op('Div', [a, g.scalar(Math.SQRT2)])]), g.scalar(1)])]), g.scalar(0.5)]);
  const y = g.op('Add', [x1, linear(gelu, weight('mlp.fc2.weight'), weight('mlp.fc2.bias'))]);

  const diff = g.op('Sub', [y, rows(target)]);
  // The mean over channels in float32, then each image's tokens averaged in float64, as the onnx runtime's trainer does.
  const perToken = g.op('ReduceMean', [g.op('Mul', [diff, diff])], { axes: [1], keepdims: 0 });
  return g.op('ReduceMean', [g.op('Reshape', [castGraph(ctx, perToken, 'float64'), g.int64s([-1, T])])], { axes: [1], keepdims: 0 });
}

/** The features of `blocks` as one float64 [N, blocks] value: each student's discrepancy is a column. */
export function discrepancyFeaturesGraph(
  ctx: OnnxExportContext,
  spec: BlockSpec,
  blocks: readonly number[],
  weights: readonly Record<string, Tensor>[],
  taps: ReadonlyMap<number, { input: string; output: string }>,
): string {
  const g = ctx.graph;
  const columns = blocks.map((block, i) => {
    const tap = taps.get(block);
    if (!tap) throw new Error(`no tap was given for block ${block} (taps of blocks [${[...taps.keys()].join(', ')}])`);
    return g.op('Unsqueeze', [studentDiscrepancyGraph(ctx, spec, weights[i], block, tap.input, tap.output), g.int64s([1])]);
  });
  return columns.length === 1 ? columns[0] : g.op('Concat', columns, { axis: 1 });
}
