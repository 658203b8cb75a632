import { endianness } from 'node:os';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import { writeFileAtomic } from '../io/atomic.js';
import type { OnnxModel } from '../types.js';
import {
  elementBytes,
  tensorElementType,
  type OnnxAttributeValue,
  type OnnxElementType,
  type OnnxGraph,
  type OnnxTensorData,
  type OnnxValueInfo,
} from './graph.js';

const { onnx } = onnxProto;
type TensorProtoInit = onnxProto.onnx.ITensorProto;

/** Protobuf messages cannot exceed 2 GiB; keep headroom for the graph itself. */
export const DEFAULT_EXTERNAL_DATA_THRESHOLD = 2 ** 31 - 2 ** 27;

export interface OnnxExternalDataOptions {
  /** Folder that receives `<name>.onnx.data`; becomes `OnnxModel.externalDataDir`. */
  dir: string;
  /** Base of the data file's name; default the graph's name. */
  name?: string;
  /** Total initializer bytes above which weights move to the data file; default `DEFAULT_EXTERNAL_DATA_THRESHOLD`. */
  threshold?: number;
  /** Initializers smaller than this stay embedded even when the rest moves out; default 1024 bytes. */
  minTensorBytes?: number;
}

export interface OnnxSerializeOptions {
  /** Version of the default (ai.onnx) operator set; default 17. */
  opset?: number;
  /** Further operator sets by domain, e.g. `{ 'com.microsoft': 1 }`. */
  opsetImports?: Record<string, number>;
  /** Default 8 (the newest IR version that onnx-proto knows, enough for opset 17). */
  irVersion?: number;
  producerName?: string;
  producerVersion?: string;
  docString?: string;
  metadata?: Record<string, string>;
  /**
   * Where weights go when they do not fit in the protobuf. Without it a graph whose initializers exceed the
   * threshold cannot be serialised.
   */
  externalData?: OnnxExternalDataOptions;
}

const DATA_TYPE: Record<OnnxElementType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  float16: onnx.TensorProto.DataType.FLOAT16,
  bfloat16: onnx.TensorProto.DataType.BFLOAT16,
  float64: onnx.TensorProto.DataType.DOUBLE,
  int8: onnx.TensorProto.DataType.INT8,
  uint8: onnx.TensorProto.DataType.UINT8,
  int32: onnx.TensorProto.DataType.INT32,
  int64: onnx.TensorProto.DataType.INT64,
  bool: onnx.TensorProto.DataType.BOOL,
};

/** ONNX's numeric code for an element type (TensorProto.DataType). */
export function onnxDataType(type: OnnxElementType): number {
  return DATA_TYPE[type];
}

/**
 * Serialises a graph to an ONNX ModelProto. When the initializers exceed the threshold, every initializer of at
 * least `minTensorBytes` is written to `<dir>/<name>.onnx.data` (offsets aligned for memory mapping) and referenced
 * through external_data entries; the returned model then carries `externalDataDir`.
 */
export async function serializeOnnxModel(graph: OnnxGraph, options: OnnxSerializeOptions = {}): Promise<OnnxModel> {
  if (endianness() !== 'LE') throw new Error('ONNX raw tensor data is little-endian; this host is big-endian');
  graph.validate();
  const external = options.externalData;
  const threshold = external?.threshold ?? DEFAULT_EXTERNAL_DATA_THRESHOLD;
  const total = graph.initializerBytes();
  let externalDataDir: string | undefined;
  const placed = new Map<string, { location: string; offset: number; length: number }>();
  if (total > threshold) {
    if (!external) {
      throw new Error(
        `graph "${graph.name}": ${total} bytes of initializers exceed the ${threshold}-byte limit of an embedded ONNX model; ` +
          'pass externalData.dir to store them beside it',
      );
    }
    const location = `${sanitize(external.name ?? graph.name)}.onnx.data`;
    const minBytes = external.minTensorBytes ?? 1024;
    const chunks: Uint8Array[] = [];
    let offset = 0;
    for (const { name, tensor } of graph.initializers) {
      const length = tensor.data.byteLength;
      if (length < minBytes) continue;
      // onnx's own converter aligns large tensors to pages (so they can be memory-mapped) and the rest to 64 bytes.
      const alignment = length >= 1 << 20 ? 4096 : 64;
      const pad = (alignment - (offset % alignment)) % alignment;
      if (pad > 0) chunks.push(new Uint8Array(pad));
      offset += pad;
      chunks.push(rawBytes(tensor));
      placed.set(name, { location, offset, length });
      offset += length;
    }
    await writeFileAtomic(join(external.dir, location), chunks);
    externalDataDir = external.dir;
  }

  const model = onnx.ModelProto.create({
    irVersion: options.irVersion ?? 8,
    producerName: options.producerName ?? 'transformaly',
    producerVersion: options.producerVersion ?? '',
    docString: options.docString ?? '',
    opsetImport: [
      { domain: '', version: options.opset ?? 17 },
      ...Object.entries(options.opsetImports ?? {}).map(([domain, version]) => ({ domain, version })),
    ],
    metadataProps: Object.entries(options.metadata ?? {}).map(([key, value]) => ({ key, value })),
    graph: graphProto(graph, placed),
  });
  return { bytes: onnx.ModelProto.encode(model).finish(), externalDataDir };
}

function graphProto(graph: OnnxGraph, placed: ReadonlyMap<string, { location: string; offset: number; length: number }>): onnxProto.onnx.IGraphProto {
  return {
    name: graph.name,
    input: graph.inputs.map(valueInfoProto),
    output: graph.outputs.map(valueInfoProto),
    valueInfo: graph.valueInfos.map(valueInfoProto),
    initializer: graph.initializers.map(({ name, tensor }) => {
      const where = placed.get(name);
      if (!where) return tensorProto(name, tensor);
      return {
        name,
        dims: [...tensor.dims],
        dataType: DATA_TYPE[tensorElementType(tensor)],
        dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: [
          { key: 'location', value: where.location },
          { key: 'offset', value: String(where.offset) },
          { key: 'length', value: String(where.length) },
        ],
      };
    }),
    node: graph.nodes.map((node) => ({
      name: node.name,
      opType: node.opType,
      domain: node.domain,
      input: node.inputs,
      output: node.outputs,
      attribute: Object.entries(node.attributes).map(([name, value]) => attributeProto(node.name, name, value)),
    })),
  };
}

function tensorProto(name: string, tensor: OnnxTensorData): TensorProtoInit {
  const type = tensorElementType(tensor);
  const expected = tensor.data.length * elementBytes(type);
  if (tensor.data.byteLength !== expected) {
    throw new Error(`tensor "${name}": ${tensor.data.constructor.name} data cannot hold element type ${type}`);
  }
  return { name, dims: [...tensor.dims], dataType: DATA_TYPE[type], rawData: rawBytes(tensor) };
}

function rawBytes(tensor: OnnxTensorData): Uint8Array {
  return new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
}

function valueInfoProto(info: OnnxValueInfo): onnxProto.onnx.IValueInfoProto {
  return {
    name: info.name,
    type: {
      tensorType: {
        elemType: DATA_TYPE[info.type],
        shape: info.dims === undefined ? undefined : { dim: info.dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

const ATTR = onnx.AttributeProto.AttributeType;

function attributeProto(node: string, name: string, value: OnnxAttributeValue): onnxProto.onnx.IAttributeProto {
  const integer = (v: number): number => {
    if (!Number.isInteger(v)) {
      throw new Error(`node ${node}: attribute ${name} = ${v} is not an integer; wrap floats as onnxAttr.float(...) / onnxAttr.floats(...)`);
    }
    return v;
  };
  if (typeof value === 'number') return { name, type: ATTR.INT, i: integer(value) };
  if (typeof value === 'string') return { name, type: ATTR.STRING, s: Buffer.from(value, 'utf8') };
  if (Array.isArray(value)) {
    if (value.every((v) => typeof v === 'number')) return { name, type: ATTR.INTS, ints: value.map(integer) };
    if (value.every((v) => typeof v === 'string')) return { name, type: ATTR.STRINGS, strings: value.map((v: string) => Buffer.from(v, 'utf8')) };
    throw new Error(`node ${node}: attribute ${name} mixes numbers and strings`);
  }
  const tagged = value as Exclude<OnnxAttributeValue, number | string | readonly number[] | readonly string[]>;
  switch (tagged.kind) {
    case 'float':
      return { name, type: ATTR.FLOAT, f: tagged.value };
    case 'floats':
      return { name, type: ATTR.FLOATS, floats: [...tagged.value] };
    case 'tensor':
      return { name, type: ATTR.TENSOR, t: tensorProto(name, tagged.value) };
    case 'graph':
      return { name, type: ATTR.GRAPH, g: graphProto(tagged.value, new Map()) };
  }
}

function sanitize(name: string): string {
  const cleaned = name.replace(/[^A-Za-z0-9._-]/g, '_');
  return cleaned === '' ? 'model' : cleaned;
}
