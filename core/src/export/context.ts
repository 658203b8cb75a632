import { OnnxGraph, onnxAttr, type OnnxAttributeValue, type OnnxTensorData } from '../onnx/graph.js';
import type { OnnxExportContext } from '../types.js';

/** The operator set an exported detector declares; hooks use its standard operators only. */
export const EXPORT_OPSET = 17;

/** The `OnnxExportContext` of one stage: names it adds start with its config path. */
export class StageExportContext implements OnnxExportContext {
  readonly opset = EXPORT_OPSET;
  private appended = 0;

  constructor(
    readonly graph: OnnxGraph,
    readonly scope: string,
  ) {}

  weight(name: string, tensor: OnnxTensorData): string {
    return this.graph.initializer(`${this.scope}.${name}`, tensor);
  }

  append(sub: OnnxGraph, inputs: Record<string, string>): Record<string, string> {
    for (const input of sub.inputs) {
      const bound = inputs[input.name];
      if (bound === undefined) throw new Error(`${this.scope}: appending graph "${sub.name}": its input "${input.name}" is bound to no value`);
      if (!this.graph.has(bound)) throw new Error(`${this.scope}: appending graph "${sub.name}": its input "${input.name}" is bound to "${bound}", which is not a value of the graph`);
    }
    for (const name of Object.keys(inputs)) {
      if (!sub.inputs.some((i) => i.name === name)) throw new Error(`${this.scope}: appending graph "${sub.name}": it has no input "${name}"`);
    }
    const prefix = `${this.scope}${this.appended++ === 0 ? '' : `#${this.appended}`}/`;
    const rename = (name: string) => (name === '' ? '' : (inputs[name] ?? `${prefix}${name}`));
    copyInto(this.graph, sub, rename, prefix);
    return Object.fromEntries(sub.outputs.map((o) => [o.name, rename(o.name)]));
  }
}

/** Copies `sub`'s initializers, nodes and value infos into `target`, every value name through `rename`. */
function copyInto(target: OnnxGraph, sub: OnnxGraph, rename: (name: string) => string, prefix: string): void {
  for (const { name, tensor } of sub.initializers) target.initializer(rename(name), tensor);
  for (const node of sub.nodes) {
    const attributes: Record<string, OnnxAttributeValue> = {};
    for (const [key, value] of Object.entries(node.attributes)) {
      attributes[key] = typeof value === 'object' && value !== null && 'kind' in value && value.kind === 'graph' ? onnxAttr.graph(renamedBody(value.value, rename, prefix)) : value;
    }
    target.node(node.opType, node.inputs.map(rename), node.outputs.map(rename), attributes, { name: `${prefix}${node.name}`, domain: node.domain });
  }
  for (const info of sub.valueInfos) target.valueInfo(rename(info.name), info.type, info.dims);
}

/** A control-flow body with every name renamed alike, so that its references to the outer graph still hold. */
function renamedBody(body: OnnxGraph, rename: (name: string) => string, prefix: string): OnnxGraph {
  const out = new OnnxGraph(body.name);
  for (const input of body.inputs) out.input(rename(input.name), input.type, input.dims);
  copyInto(out, body, rename, prefix);
  for (const output of body.outputs) out.output(rename(output.name), output.type, output.dims);
  return out;
}
