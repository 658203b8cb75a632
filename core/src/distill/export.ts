// The distiller's part of an exported detector: each student block with its kept weights as constants, and its
// per-image discrepancy to the teacher block. The block is the backbone's (core/src/onnx/vit-block.ts) with the
// attention scale applied where the trained student applies it, so that onnxruntime computes the same float32 values
// as when the detector scores.
import { castGraph } from '../export/graph-ops.js';
import { appendVitBlock, gemmLinear } from '../onnx/vit-block.js';
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
  const { width: D, tokens: T } = spec;
  const constant = (name: string, tensor: { dims: readonly number[]; data: Float32Array } = weights[name]) =>
    ctx.weight(`block${block}.${name}`, { dims: tensor.dims, data: tensor.data });
  const rows = (value: string) => g.op('Reshape', [value, g.int64s([-1, D])]);
  const y = appendVitBlock(
    g,
    spec,
    rows(input),
    {
      tensor: (name) => weights[name],
      constant: (name) => constant(name),
      linear: gemmLinear(g, constant),
    },
    'scores',
  );

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
