// A small ONNX graph builder: values are named by strings, nodes are appended in topological order, and the graph is
// serialised by `serializeOnnxModel`. It knows no operator semantics, so it serves inference graphs, training graphs
// and subgraphs (If/Loop bodies) alike.

/** Element types of tensors that the builder can declare and store. */
export type OnnxElementType = 'float32' | 'float16' | 'bfloat16' | 'float64' | 'int8' | 'uint8' | 'int32' | 'int64' | 'bool';

/** A dimension: a fixed size, or a name for a symbolic one (e.g. `'N'` for the batch). */
export type OnnxDim = number | string;

/** Data of an initializer or tensor attribute, row-major. */
export interface OnnxTensorData {
  dims: readonly number[];
  /**
   * Float32Array, Float64Array, Int32Array, BigInt64Array, Int8Array or Uint8Array give their own element type;
   * `float16`/`bfloat16` take the raw bits as a Uint16Array, `bool` a Uint8Array of 0/1.
   */
  data: Float32Array | Float64Array | Int32Array | BigInt64Array | Int8Array | Uint8Array | Uint16Array;
  type?: OnnxElementType;
}

/** A declared type and shape; `dims` absent means rank unknown. */
export interface OnnxValueType {
  type: OnnxElementType;
  dims?: readonly OnnxDim[];
}

export type OnnxAttributeValue =
  | number
  | readonly number[]
  | string
  | readonly string[]
  | { readonly kind: 'float'; readonly value: number }
  | { readonly kind: 'floats'; readonly value: readonly number[] }
  | { readonly kind: 'tensor'; readonly value: OnnxTensorData }
  | { readonly kind: 'graph'; readonly value: OnnxGraph };

/**
 * Typed attribute values. A plain number is an INT attribute and a plain number array INTS (they must hold
 * integers), a string STRING, a string array STRINGS; floats must be wrapped, so that `epsilon: 1` cannot silently
 * become an integer.
 */
export const onnxAttr = {
  float: (value: number) => ({ kind: 'float', value }) as const,
  floats: (value: readonly number[]) => ({ kind: 'floats', value }) as const,
  tensor: (value: OnnxTensorData) => ({ kind: 'tensor', value }) as const,
  graph: (value: OnnxGraph) => ({ kind: 'graph', value }) as const,
};

export interface OnnxNode {
  opType: string;
  domain: string;
  name: string;
  inputs: string[];
  outputs: string[];
  attributes: Record<string, OnnxAttributeValue>;
}

export interface OnnxInitializer {
  name: string;
  tensor: OnnxTensorData;
}

export interface OnnxValueInfo extends OnnxValueType {
  name: string;
}

const TYPED_ARRAY_TYPES: Array<[new (...args: never[]) => unknown, OnnxElementType]> = [
  [Float32Array, 'float32'],
  [Float64Array, 'float64'],
  [Int32Array, 'int32'],
  [BigInt64Array, 'int64'],
  [Int8Array, 'int8'],
];

/** The element type of tensor data: its `type`, else the one its array class implies. */
export function tensorElementType(tensor: OnnxTensorData): OnnxElementType {
  if (tensor.type !== undefined) return tensor.type;
  for (const [ctor, type] of TYPED_ARRAY_TYPES) if (tensor.data instanceof ctor) return type;
  if (tensor.data instanceof Uint8Array) return 'uint8';
  throw new Error('a Uint16Array tensor needs an explicit type (float16 or bfloat16)');
}

/** Bytes of one element. */
export function elementBytes(type: OnnxElementType): number {
  switch (type) {
    case 'float64':
    case 'int64':
      return 8;
    case 'float32':
    case 'int32':
      return 4;
    case 'float16':
    case 'bfloat16':
      return 2;
    case 'int8':
    case 'uint8':
    case 'bool':
      return 1;
  }
}

/** A graph under construction. Value names are global to the graph; `fresh` makes unused ones. */
export class OnnxGraph {
  readonly inputs: OnnxValueInfo[] = [];
  readonly outputs: OnnxValueInfo[] = [];
  readonly valueInfos: OnnxValueInfo[] = [];
  readonly initializers: OnnxInitializer[] = [];
  readonly nodes: OnnxNode[] = [];
  private readonly names = new Set<string>();
  private counter = 0;

  constructor(readonly name = 'graph') {}

  /** Declares a graph input. */
  input(name: string, type: OnnxElementType, dims?: readonly OnnxDim[]): string {
    this.claim(name);
    this.inputs.push({ name, type, dims });
    return name;
  }

  /** Declares an existing value (a node output, input or initializer) as a graph output. */
  output(name: string, type: OnnxElementType, dims?: readonly OnnxDim[]): string {
    if (!this.names.has(name)) throw new Error(`graph "${this.name}": output "${name}" is not a value of the graph`);
    if (this.outputs.some((o) => o.name === name)) throw new Error(`graph "${this.name}": "${name}" is already an output`);
    this.outputs.push({ name, type, dims });
    return name;
  }

  /** Records the type and shape of an intermediate value (optional; helps readers and shape inference). */
  valueInfo(name: string, type: OnnxElementType, dims?: readonly OnnxDim[]): void {
    this.valueInfos.push({ name, type, dims });
  }

  /** Adds a named constant tensor (a weight); returns its name. */
  initializer(name: string, tensor: OnnxTensorData): string {
    const count = tensor.dims.reduce((a, b) => a * b, 1);
    if (count !== tensor.data.length) {
      throw new Error(`graph "${this.name}": initializer "${name}" has dims [${tensor.dims.join(', ')}] (${count} elements) but ${tensor.data.length} values`);
    }
    tensorElementType(tensor);
    this.claim(name);
    this.initializers.push({ name, tensor });
    return name;
  }

  /** An initializer under a fresh name. */
  constant(tensor: OnnxTensorData, prefix = 'const'): string {
    return this.initializer(this.fresh(prefix), tensor);
  }

  /** A 1-D int64 constant, e.g. a shape for Reshape or axes for Unsqueeze. */
  int64s(values: readonly number[], prefix = 'ints'): string {
    return this.constant({ dims: [values.length], data: BigInt64Array.from(values, (v) => BigInt(v)) }, prefix);
  }

  /** A scalar constant (rank 0). */
  scalar(value: number, type: 'float32' | 'float64' | 'int64' | 'int32' = 'float32', prefix = 'scalar'): string {
    const data =
      type === 'float32' ? Float32Array.of(value)
      : type === 'float64' ? Float64Array.of(value)
      : type === 'int32' ? Int32Array.of(value)
      : BigInt64Array.of(BigInt(value));
    return this.constant({ dims: [], data }, prefix);
  }

  /**
   * Appends a node. `outputs` is a count (fresh names are made from the op type) or explicit names; an empty string
   * in `inputs` skips an optional input. Returns the output names.
   */
  node(
    opType: string,
    inputs: readonly string[],
    outputs: number | readonly string[] = 1,
    attributes: Record<string, OnnxAttributeValue> = {},
    options: { name?: string; domain?: string } = {},
  ): string[] {
    const names = typeof outputs === 'number' ? Array.from({ length: outputs }, () => this.fresh(opType)) : [...outputs];
    for (const name of names) if (name !== '') this.claim(name);
    this.nodes.push({
      opType,
      domain: options.domain ?? '',
      name: options.name ?? `${opType}_${this.nodes.length}`,
      inputs: [...inputs],
      outputs: names,
      attributes,
    });
    return names;
  }

  /** A node with one output; returns its name (`output` names it, else a fresh name). */
  op(
    opType: string,
    inputs: readonly string[],
    attributes: Record<string, OnnxAttributeValue> = {},
    options: { output?: string; name?: string; domain?: string } = {},
  ): string {
    return this.node(opType, inputs, options.output === undefined ? 1 : [options.output], attributes, options)[0];
  }

  /** An unused value name starting with `prefix` (distinct from every earlier `fresh` result). */
  fresh(prefix: string): string {
    let name: string;
    do name = `${prefix}_${this.counter++}`;
    while (this.names.has(name));
    return name;
  }

  /** Whether a value of this name exists in the graph. */
  has(name: string): boolean {
    return this.names.has(name);
  }

  /** Total bytes of the initializers' data. */
  initializerBytes(): number {
    let total = 0;
    for (const { tensor } of this.initializers) total += tensor.data.byteLength;
    return total;
  }

  /**
   * Checks that every node input is defined before use (graph inputs, initializers, earlier outputs, or names of
   * `outerScope` for subgraphs) and that every output is produced; throws naming the first offender.
   */
  validate(outerScope: ReadonlySet<string> = new Set()): void {
    const defined = new Set<string>(outerScope);
    for (const { name } of this.inputs) defined.add(name);
    for (const { name } of this.initializers) defined.add(name);
    for (const node of this.nodes) {
      for (const input of node.inputs) {
        if (input !== '' && !defined.has(input)) {
          throw new Error(`graph "${this.name}": node ${node.name} (${node.opType}) reads "${input}" before it is defined`);
        }
      }
      for (const value of Object.values(node.attributes)) {
        if (typeof value === 'object' && value !== null && 'kind' in value && value.kind === 'graph') value.value.validate(defined);
      }
      for (const output of node.outputs) {
        if (output === '') continue;
        if (defined.has(output)) throw new Error(`graph "${this.name}": "${output}" is produced twice (node ${node.name})`);
        defined.add(output);
      }
    }
    for (const { name } of this.outputs) {
      if (!defined.has(name)) throw new Error(`graph "${this.name}": output "${name}" is never produced`);
    }
  }

  private claim(name: string): void {
    if (name === '') throw new Error(`graph "${this.name}": value names must not be empty`);
    if (this.names.has(name)) throw new Error(`graph "${this.name}": value "${name}" is defined twice`);
    this.names.add(name);
  }
}
