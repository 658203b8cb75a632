import { OnnxGraph, onnxDataType, type BackboneGraphValues, type OnnxExportContext, type OnnxNode } from '@transformaly/core';
import type { VitArch, VitWeights } from './arch.js';
import { buildVitGraph, FEATURES, hiddenName, PIXELS, type VitPrecision } from './graph.js';

/**
 * The backbone's part of an exported detector: the very graph the backbone runs (`buildVitGraph`), appended with its
 * pixels input bound to `pixels`; the features and the hidden states around each tapped block are its outputs. An
 * int8 backbone's onnxruntime-only layers are written in standard operators (`standardQuantizedLinear`).
 */
export function exportVitGraph(
  ctx: OnnxExportContext,
  arch: VitArch,
  weights: VitWeights,
  precision: VitPrecision,
  pixels: string,
  taps: readonly number[],
): BackboneGraphValues {
  for (const i of taps) {
    if (!Number.isInteger(i) || i < 0 || i >= arch.depth) throw new Error(`tap ${i} is not a block index (0..${arch.depth - 1})`);
  }
  const values = ctx.append(withStandardOperators(buildVitGraph(arch, weights, precision)), { [PIXELS]: pixels });
  return {
    features: values[FEATURES],
    taps: new Map(taps.map((i) => [i, { input: values[hiddenName(i)], output: values[hiddenName(i + 1)] }])),
  };
}

/** The graph with each `com.microsoft` DynamicQuantizeMatMul replaced by standard operators; the rest as it is. */
function withStandardOperators(graph: OnnxGraph): OnnxGraph {
  if (!graph.nodes.some(isDynamicQuantizeMatMul)) return graph;
  const out = new OnnxGraph(graph.name);
  for (const input of graph.inputs) out.input(input.name, input.type, input.dims);
  for (const { name, tensor } of graph.initializers) out.initializer(name, tensor);
  for (const node of graph.nodes) {
    if (isDynamicQuantizeMatMul(node)) standardQuantizedLinear(out, node);
    else out.node(node.opType, node.inputs, node.outputs, node.attributes, { name: node.name, domain: node.domain });
  }
  for (const info of graph.valueInfos) out.valueInfo(info.name, info.type, info.dims);
  for (const output of graph.outputs) out.output(output.name, output.type, output.dims);
  return out;
}

function isDynamicQuantizeMatMul(node: OnnxNode): boolean {
  return node.domain === 'com.microsoft' && node.opType === 'DynamicQuantizeMatMul';
}

/**
 * DynamicQuantizeMatMul(A, B, b_scale, b_zero_point?, bias?) in opset-17 operators, as onnxruntime computes it: A
 * quantized per tensor to uint8 (DynamicQuantizeLinear), an integer product with the int8 weight (MatMulInteger),
 * then scaled by a_scale * b_scale per output channel, plus the bias.
 */
function standardQuantizedLinear(g: OnnxGraph, node: OnnxNode): void {
  const [a, b, bScale, bZeroPoint = '', bias = ''] = node.inputs;
  const out = node.outputs[0];
  // Value and node names derived from the replaced node's: generated ones could collide with those of nodes not
  // copied yet.
  const name = (part: string) => `${out}/${part}`;
  const named = (part: string, output = name(part)) => ({ output, name: `${node.name}/${part}` });
  const [quantized, aScale, aZeroPoint] = g.node('DynamicQuantizeLinear', [a], [name('a_quantized'), name('a_scale'), name('a_zero_point')], {}, { name: `${node.name}/quantize` });
  const product = g.op('MatMulInteger', bZeroPoint === '' ? [quantized, b, aZeroPoint] : [quantized, b, aZeroPoint, bZeroPoint], {}, named('product'));
  const scale = g.op('Mul', [aScale, bScale], {}, named('scale'));
  const float = g.op('Cast', [product], { to: onnxDataType('float32') }, named('product_float'));
  const scaled = g.op('Mul', [float, scale], {}, named('scaled', bias === '' ? out : name('scaled')));
  if (bias !== '') g.op('Add', [scaled, bias], {}, named('bias', out));
}
