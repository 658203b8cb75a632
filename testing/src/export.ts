// The `exportOnnx` rule of scorers and combiners: the nodes a stage appends to an exported detector compute what its
// JavaScript computes. The kit builds a graph around the hook alone and runs it on onnxruntime.
import { describeValue, EXPORT_OPSET, OnnxGraph, serializeOnnxModel, StageExportContext, type NumericTensor, type OnnxExportContext } from '@transformaly/core';
import { kitRuntime } from './checks.js';

/** The relative difference per value that an exported stage may show: the parity target of an exported detector. */
export const EXPORT_RTOL = 1e-4;

export interface GraphInput {
  name: string;
  tensor: NumericTensor;
}

/**
 * Builds a graph with `inputs`, lets `hook` append to it (as the stage in `scope`), and runs it on onnxruntime; returns
 * the float64 value the hook named. Fails, with the reason, when the hook returns no value of the graph, uses an
 * operator outside the standard domain, or the graph does not run.
 */
export async function runExportHook(
  scope: string,
  inputs: GraphInput[],
  hook: (ctx: OnnxExportContext, names: string[]) => unknown,
  fail: (detail: string) => never,
): Promise<Float64Array> {
  const graph = new OnnxGraph('export_check');
  const names = inputs.map(({ name, tensor }) => graph.input(name, tensor.type, tensor.dims.map((d, i) => (i === 0 ? 'N' : d))));
  const value = await hook(new StageExportContext(graph, scope), names);
  if (typeof value !== 'string' || !graph.has(value)) fail(`exportOnnx returned ${describeValue(value)}, not the name of a value of the graph`);
  const foreign = graph.nodes.find((n) => n.domain !== '' && n.domain !== 'ai.onnx');
  if (foreign) fail(`exportOnnx used the operator ${foreign.domain}.${foreign.opType}; only the standard operators (opset ${EXPORT_OPSET}) may be used`);
  graph.output(graph.op('Identity', [value as string], {}, { output: 'result' }), 'float64');
  let out: Record<string, NumericTensor>;
  try {
    const model = await serializeOnnxModel(graph, { opset: EXPORT_OPSET });
    const session = await kitRuntime().createNumericSession(model.bytes);
    try {
      out = await session.run(Object.fromEntries(inputs.map(({ name, tensor }) => [name, tensor])));
    } finally {
      await session.dispose();
    }
  } catch (error) {
    return fail(`the graph exportOnnx built does not run on onnxruntime: ${(error as Error).message}`);
  }
  if (out.result.type !== 'float64') fail(`exportOnnx returned a ${out.result.type} value; scores are float64`);
  return out.result.data as Float64Array;
}

/** The index of the first value further than `EXPORT_RTOL` (relative) from the reference, or -1. */
export function firstExportMismatch(actual: Float64Array, expected: Float64Array): number {
  if (actual.length !== expected.length) return 0;
  return expected.findIndex((e, i) => !(Math.abs(actual[i] - e) <= EXPORT_RTOL * Math.abs(e)));
}
