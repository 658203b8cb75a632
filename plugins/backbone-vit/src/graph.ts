import {
  appendVitBlock,
  gemmLinear,
  OnnxGraph,
  onnxAttr,
  serializeOnnxModel,
  type BlockSpec,
  type OnnxExternalDataOptions,
  type OnnxModel,
  type Tensor,
  type VitBlockWeights,
} from '@transformaly/core';
import { checkArch, gridOf, type VitArch, type VitWeights } from './arch.js';

/** Name of the graph input: preprocessed pixels [N, 3, H, W]. */
export const PIXELS = 'pixels';
/** Name of the graph output holding the final-LayerNorm CLS token [N, width]. */
export const FEATURES = 'features';
/** Name of the graph output holding the input of block `i` (the output of block `i - 1`), [N, tokens, width]. */
export const hiddenName = (i: number): string => `hidden_${i}`;

/**
 * How the linear layers compute: `float32`, or `int8`: each weight matrix quantized once, symmetrically per output
 * channel, and each layer onnxruntime's `DynamicQuantizeMatMul` (com.microsoft), which quantizes the activations per
 * call (uint8, per tensor) and multiplies in integers (VNNI/AMX where the CPU has them).
 */
export type VitPrecision = 'float32' | 'int8';

/** Operator sets beyond the default domain that a graph of this precision uses. */
export function vitOpsetImports(precision: VitPrecision): Record<string, number> {
  return precision === 'int8' ? { 'com.microsoft': 1 } : {};
}

/**
 * The ViT as an ONNX graph (opset 17). Hidden states are kept as [N * tokens, width] matrices so that every linear
 * layer is one Gemm (bias included) against a constant weight; only attention goes through [N, heads, tokens, head]
 * views, as batched MatMuls (the blocks are core's `appendVitBlock`). The 1/sqrt(head) attention scale is folded
 * into the query weights. With `precision: 'int8'` the linear layers of the blocks are dynamically quantized
 * (`VitPrecision`); the patch embedding, attention products and norms stay float32.
 */
export function buildVitGraph(arch: VitArch, weights: VitWeights, precision: VitPrecision = 'float32'): OnnxGraph {
  checkArch(arch);
  const { width: d, patchSize: p } = arch;
  const { rows, cols, tokens } = gridOf(arch);
  const patches = rows * cols;
  const g = new OnnxGraph('vit');
  const w = (name: string): Tensor => {
    const t = weights.get(name);
    if (!t) throw new Error(`ViT graph: weight "${name}" is missing`);
    return t;
  };
  const init = (name: string, tensor: Tensor) => g.initializer(name, { dims: tensor.dims, data: tensor.data });

  const pixels = g.input(PIXELS, 'float32', ['N', 3, arch.imageSize[0], arch.imageSize[1]]);

  // Patch embedding: a strided convolution, then [N, D, rows, cols] -> [N, patches, D].
  const conv = g.op('Conv', [pixels, init('patch_embed.weight', w('patch_embed.proj.weight')), init('patch_embed.bias', w('patch_embed.proj.bias'))], {
    kernel_shape: [p, p],
    strides: [p, p],
  });
  const embedded = g.op('Transpose', [g.op('Reshape', [conv, g.int64s([0, d, patches])])], { perm: [0, 2, 1] });
  // Position embeddings: the patch part is added here; the CLS part is pre-added to the CLS token.
  const pos = w('pos_embed').data;
  const cls = w('cls_token').data;
  const clsPos = new Float32Array(d);
  for (let j = 0; j < d; j++) clsPos[j] = cls[j] + pos[j];
  const patchPos = init('pos_embed.patches', { dims: [patches, d], data: pos.slice(d) });
  const positioned = g.op('Add', [embedded, patchPos]);
  const batch = g.op('Shape', [pixels], { start: 0, end: 1 });
  const clsShape = g.op('Concat', [batch, g.int64s([1, d])], { axis: 0 });
  const clsRows = g.op('Expand', [init('cls_token.positioned', { dims: [1, 1, d], data: clsPos }), clsShape]);
  const hidden0 = g.op('Concat', [clsRows, positioned], { axis: 1 }, { output: hiddenName(0) });
  g.output(hidden0, 'float32', ['N', tokens, d]);

  const tokensShape = g.int64s([-1, tokens, d]);
  let x = g.op('Reshape', [hidden0, g.int64s([-1, d])]);
  for (let i = 0; i < arch.depth; i++) {
    x = block(g, arch, weights, i, x, precision);
    g.output(g.op('Reshape', [x, tokensShape], {}, { output: hiddenName(i + 1) }), 'float32', ['N', tokens, d]);
  }

  // The final LayerNorm acts per token, so normalising only the CLS rows gives the same features.
  const last = hiddenName(arch.depth);
  const clsToken = g.op('Gather', [last, g.scalar(0, 'int64')], { axis: 1 });
  g.op('LayerNormalization', [clsToken, init('norm.weight', w('norm.weight')), init('norm.bias', w('norm.bias'))], { axis: -1, epsilon: onnxAttr.float(arch.layerNormEps) }, { output: FEATURES });
  g.output(FEATURES, 'float32', ['N', d]);
  return g;
}

/** Block `i` of the checkpoint, through the one ViT block description in core. */
function block(g: OnnxGraph, arch: VitArch, weights: VitWeights, i: number, rows: string, precision: VitPrecision): string {
  const name = (suffix: string) => `blocks.${i}.${suffix}`;
  const tensor = (suffix: string): Tensor => {
    const t = weights.get(name(suffix));
    if (!t) throw new Error(`ViT graph: weight "${name(suffix)}" is missing`);
    return t;
  };
  const constant = (suffix: string, t: Tensor = tensor(suffix)) => g.initializer(name(suffix), { dims: t.dims, data: t.data });
  const spec: BlockSpec = { width: arch.width, heads: arch.heads, mlpDim: arch.mlpDim, layerNormEps: arch.layerNormEps, qkvBias: arch.qkvBias, tokens: gridOf(arch).tokens };
  const linear: VitBlockWeights['linear'] =
    precision === 'int8'
      ? (input, { label, weight, bias, outDim, inDim, scale }) => quantizedLinear(g, name(label), input, weight, bias, outDim, inDim, scale)
      : gemmLinear(g, constant);
  return appendVitBlock(g, spec, rows, { tensor, constant: (suffix) => constant(suffix), linear }, 'query');
}

/**
 * A torch [out, in] weight (times `scale`) quantized symmetrically per output channel: `data` is int8 [in, out]
 * (the MatMul's B), `scales[o]` = scale * max |w[o, :]| / 127, and scale * w[o, i] ~ data[i * out + o] * scales[o]
 * (rounded to nearest, half away from zero). The integers do not depend on `scale`: checkpoints in 16-bit floats
 * have many exact halves, which a folded-in scale would round one way or the other by chance.
 */
export function quantizeWeightPerChannel(weight: Float32Array, outDim: number, inDim: number, scale = 1): { data: Int8Array; scales: Float32Array } {
  const scales = new Float32Array(outDim);
  const data = new Int8Array(inDim * outDim);
  for (let o = 0; o < outDim; o++) {
    let max = 0;
    for (let i = 0; i < inDim; i++) max = Math.max(max, Math.abs(weight[o * inDim + i]));
    const step = max > 0 ? max / 127 : 1;
    scales[o] = step * scale;
    for (let i = 0; i < inDim; i++) {
      const v = weight[o * inDim + i] / step;
      data[i * outDim + o] = Math.max(-127, Math.min(127, Math.sign(v) * Math.round(Math.abs(v))));
    }
  }
  return { data, scales };
}

/** `input [M, inDim] x weight^T + bias` as DynamicQuantizeMatMul on the weight quantized per output channel. */
function quantizedLinear(
  g: OnnxGraph,
  prefix: string,
  input: string,
  weight: Float32Array,
  bias: Float32Array | undefined,
  outDim: number,
  inDim: number,
  scale: number,
): string {
  const { data, scales } = quantizeWeightPerChannel(weight, outDim, inDim, scale);
  const inputs = [
    input,
    g.initializer(`${prefix}.weight_int8`, { dims: [inDim, outDim], data }),
    g.initializer(`${prefix}.weight_scale`, { dims: [outDim], data: scales }),
    '',
  ];
  if (bias) inputs.push(g.initializer(`${prefix}.bias`, { dims: [outDim], data: scale === 1 ? bias : bias.map((v) => v * scale) }));
  return g.op('DynamicQuantizeMatMul', inputs, {}, { domain: 'com.microsoft' });
}

export interface VitModelOptions {
  /** Where weights go if they exceed protobuf's limit (or `externalData.threshold`). */
  externalData?: OnnxExternalDataOptions;
  precision?: VitPrecision;
}

/** Builds and serialises the ViT graph. */
export async function buildVitModel(arch: VitArch, weights: VitWeights, options: VitModelOptions = {}): Promise<OnnxModel> {
  const precision = options.precision ?? 'float32';
  return serializeOnnxModel(buildVitGraph(arch, weights, precision), {
    opset: 17,
    opsetImports: vitOpsetImports(precision),
    externalData: options.externalData,
    docString: 'Pre-norm Vision Transformer built by @transformaly/backbone-vit',
  });
}
