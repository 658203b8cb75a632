// Reading an ONNX ModelProto into plain JavaScript: the graph's nodes, attributes and initializers (embedded or in
// external data files), with tensors in the element types tfjs has (float32, int32, bool).
import { open } from 'node:fs/promises';
import { isAbsolute, join, normalize } from 'node:path';
import onnxProto from 'onnx-proto';
import type { OnnxModel } from '@transformaly/core';

const { onnx } = onnxProto;
type TensorProto = onnxProto.onnx.ITensorProto;
type AttributeProto = onnxProto.onnx.IAttributeProto;

/** A tensor in host memory, in a tfjs element type. */
export interface HostTensor {
  dims: number[];
  dtype: 'float32' | 'int32' | 'bool';
  data: Float32Array | Int32Array | Uint8Array;
}

export type AttributeValue = number | number[] | string | string[] | HostTensor;

export interface GraphNode {
  name: string;
  opType: string;
  domain: string;
  inputs: string[];
  outputs: string[];
  attributes: Map<string, AttributeValue>;
}

export interface GraphInput {
  name: string;
  /** ONNX element type code. */
  elemType: number;
  /** Fixed sizes as numbers, symbolic ones as strings; undefined when the rank is unknown. */
  dims?: Array<number | string>;
}

export interface LoadedModel {
  /** Version of the default (ai.onnx) operator set. */
  opset: number;
  inputs: GraphInput[];
  outputs: string[];
  nodes: GraphNode[];
  initializers: Map<string, HostTensor>;
}

const DT = onnx.TensorProto.DataType;

/** protobufjs gives int64 fields as Long objects when the `long` package is installed, as numbers otherwise. */
function toNumber(value: number | { toNumber(): number } | null | undefined): number {
  if (value === null || value === undefined) return 0;
  return typeof value === 'number' ? value : value.toNumber();
}

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

/**
 * tfjs has no int64. ONNX uses int64 for shapes, axes and indices, where INT64_MAX/MIN mean "to the end" (Slice);
 * no tfjs tensor has 2^31 elements along an axis, so clamping to the int32 range keeps every meaning.
 */
function clampInt32(value: number): number {
  return value > INT32_MAX ? INT32_MAX : value < INT32_MIN ? INT32_MIN : value;
}

function typeName(code: number): string {
  return DT[code] ?? `type ${code}`;
}

/**
 * The bytes in a buffer of their own, aligned for any element type. (protobufjs hands out Node Buffers, views into
 * a shared pool at arbitrary offsets, whose `slice` does not copy.)
 */
function alignedBytes(bytes: Uint8Array): ArrayBuffer {
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return copy.buffer;
}

function decodeRaw(raw: Uint8Array, dataType: number, count: number, what: string): HostTensor['data'] {
  const bytesPer = dataType === DT.FLOAT || dataType === DT.INT32 ? 4 : dataType === DT.INT64 ? 8 : dataType === DT.INT16 || dataType === DT.UINT16 ? 2 : 1;
  if (raw.byteLength !== count * bytesPer) {
    throw new Error(`${what}: ${raw.byteLength} bytes of ${typeName(dataType)} data for ${count} elements (expected ${count * bytesPer})`);
  }
  switch (dataType) {
    case DT.FLOAT:
      return new Float32Array(alignedBytes(raw));
    case DT.INT32:
      return new Int32Array(alignedBytes(raw));
    case DT.INT64: {
      const wide = new BigInt64Array(alignedBytes(raw));
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = clampInt32(Number(wide[i]));
      return out;
    }
    case DT.INT16:
      return Int32Array.from(new Int16Array(alignedBytes(raw)));
    case DT.UINT16:
      return Int32Array.from(new Uint16Array(alignedBytes(raw)));
    case DT.INT8:
      return Int32Array.from(new Int8Array(alignedBytes(raw)));
    case DT.UINT8:
      return Int32Array.from(raw);
    case DT.BOOL:
      return Uint8Array.from(raw, (v) => (v ? 1 : 0));
    default:
      throw new Error(`${what}: element type ${typeName(dataType)} is not supported`);
  }
}

function dtypeOf(dataType: number, what: string): HostTensor['dtype'] {
  switch (dataType) {
    case DT.FLOAT:
      return 'float32';
    case DT.INT32:
    case DT.INT64:
    case DT.INT16:
    case DT.UINT16:
    case DT.INT8:
    case DT.UINT8:
      return 'int32';
    case DT.BOOL:
      return 'bool';
    default:
      throw new Error(
        `${what}: element type ${typeName(dataType)} is not supported by tfjs (float32, int32/int64 and bool are; ` +
          'a float64 or float16 graph needs another runtime)',
      );
  }
}

/** Where one external-data tensor lives. */
interface ExternalRef {
  location: string;
  offset: number;
  length: number | undefined;
}

function externalRef(tensor: TensorProto, what: string): ExternalRef {
  const entries = new Map((tensor.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
  const location = entries.get('location');
  if (!location) throw new Error(`${what}: external data without a "location"`);
  if (isAbsolute(location) || normalize(location).startsWith('..')) {
    throw new Error(`${what}: external data location "${location}" must be a relative path inside the model's folder`);
  }
  const offset = Number(entries.get('offset') ?? '0');
  const length = entries.has('length') ? Number(entries.get('length')) : undefined;
  if (!Number.isInteger(offset) || offset < 0 || (length !== undefined && (!Number.isInteger(length) || length < 0))) {
    throw new Error(`${what}: external data offset/length must be non-negative integers`);
  }
  return { location, offset, length };
}

/** Decodes a TensorProto; `external` reads the bytes of one whose data lives in a file. */
async function decodeTensor(
  tensor: TensorProto,
  what: string,
  external: ((ref: ExternalRef, bytes: number, what: string) => Promise<Uint8Array>) | undefined,
): Promise<HostTensor> {
  const dims = (tensor.dims ?? []).map((d) => toNumber(d));
  const count = dims.reduce((a, b) => a * b, 1);
  const dataType = tensor.dataType ?? DT.UNDEFINED;
  const dtype = dtypeOf(dataType, what);
  if (tensor.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
    if (!external) throw new Error(`${what}: its data is external but OnnxModel.externalDataDir is not set`);
    const bytesPer = dataType === DT.FLOAT || dataType === DT.INT32 ? 4 : dataType === DT.INT64 ? 8 : dataType === DT.INT16 || dataType === DT.UINT16 ? 2 : 1;
    const raw = await external(externalRef(tensor, what), count * bytesPer, what);
    return { dims, dtype, data: decodeRaw(raw, dataType, count, what) };
  }
  if (tensor.rawData && tensor.rawData.length > 0) return { dims, dtype, data: decodeRaw(tensor.rawData, dataType, count, what) };
  let data: HostTensor['data'];
  switch (dataType) {
    case DT.FLOAT:
      data = Float32Array.from(tensor.floatData ?? []);
      break;
    case DT.INT64:
      data = Int32Array.from(tensor.int64Data ?? [], (v) => clampInt32(toNumber(v)));
      break;
    case DT.BOOL:
      data = Uint8Array.from(tensor.int32Data ?? [], (v) => (v ? 1 : 0));
      break;
    default:
      data = Int32Array.from(tensor.int32Data ?? []);
  }
  if (data.length !== count) {
    throw new Error(`${what}: ${data.length} values for dims [${dims.join(', ')}] (${count} elements)`);
  }
  return { dims, dtype, data };
}

function decodeAttribute(attribute: AttributeProto, what: string): AttributeValue | Promise<HostTensor> {
  const T = onnx.AttributeProto.AttributeType;
  const text = (bytes: Uint8Array | null | undefined) => Buffer.from(bytes ?? new Uint8Array()).toString('utf8');
  switch (attribute.type) {
    case T.FLOAT:
      return attribute.f ?? 0;
    case T.INT:
      return toNumber(attribute.i);
    case T.STRING:
      return text(attribute.s);
    case T.FLOATS:
      return [...(attribute.floats ?? [])];
    case T.INTS:
      return (attribute.ints ?? []).map((v) => toNumber(v));
    case T.STRINGS:
      return (attribute.strings ?? []).map(text);
    case T.TENSOR:
      return decodeTensor(attribute.t ?? {}, what, undefined);
    default:
      throw new Error(`${what}: attribute type ${T[attribute.type ?? 0] ?? attribute.type} is not supported`);
  }
}

/**
 * Decodes a serialized model. Initializers are converted to tfjs element types; external ones are read from
 * `model.externalDataDir` (each file opened once).
 */
export async function loadOnnxModel(model: OnnxModel): Promise<LoadedModel> {
  let proto: onnxProto.onnx.ModelProto;
  try {
    proto = onnx.ModelProto.decode(model.bytes);
  } catch (error) {
    throw new Error(`runtime-tfjs: the model bytes are not an ONNX ModelProto: ${(error as Error).message}`, { cause: error });
  }
  const graph = proto.graph;
  if (!graph) throw new Error('runtime-tfjs: the ONNX model has no graph');
  const opsetEntry = (proto.opsetImport ?? []).find((o) => (o.domain ?? '') === '' || o.domain === 'ai.onnx');
  const opset = toNumber(opsetEntry?.version) || 1;

  const files = new Map<string, Awaited<ReturnType<typeof open>>>();
  const dir = model.externalDataDir;
  const external =
    dir === undefined
      ? undefined
      : async (ref: ExternalRef, bytes: number, what: string): Promise<Uint8Array> => {
          const path = join(dir, ref.location);
          let handle = files.get(path);
          if (!handle) {
            try {
              handle = await open(path, 'r');
            } catch (error) {
              throw new Error(`${what}: cannot open its external data file ${path}: ${(error as Error).message}`, { cause: error });
            }
            files.set(path, handle);
          }
          if (ref.length !== undefined && ref.length !== bytes) {
            throw new Error(`${what}: external data length ${ref.length} bytes, but its dims and type need ${bytes}`);
          }
          const out = new Uint8Array(bytes);
          let done = 0;
          while (done < bytes) {
            const { bytesRead } = await handle.read(out, done, bytes - done, ref.offset + done);
            if (bytesRead === 0) throw new Error(`${what}: ${path} ends before offset ${ref.offset} + ${bytes} bytes`);
            done += bytesRead;
          }
          return out;
        };

  try {
    const initializers = new Map<string, HostTensor>();
    for (const tensor of graph.initializer ?? []) {
      const name = tensor.name ?? '';
      initializers.set(name, await decodeTensor(tensor, `initializer "${name}"`, external));
    }
    const nodes: GraphNode[] = [];
    for (const [index, node] of (graph.node ?? []).entries()) {
      const name = node.name || `${node.opType}_${index}`;
      const attributes = new Map<string, AttributeValue>();
      for (const attribute of node.attribute ?? []) {
        const key = attribute.name ?? '';
        attributes.set(key, await decodeAttribute(attribute, `node ${name} (${node.opType}) attribute ${key}`));
      }
      nodes.push({
        name,
        opType: node.opType ?? '',
        domain: node.domain ?? '',
        inputs: [...(node.input ?? [])],
        outputs: [...(node.output ?? [])],
        attributes,
      });
    }
    const inputs: GraphInput[] = (graph.input ?? [])
      .filter((input) => !initializers.has(input.name ?? ''))
      .map((input) => {
        const tensorType = input.type?.tensorType;
        const shape = tensorType?.shape;
        return {
          name: input.name ?? '',
          elemType: tensorType?.elemType ?? DT.UNDEFINED,
          dims: shape ? (shape.dim ?? []).map((d) => (d.dimParam ? d.dimParam : d.dimValue !== undefined && d.dimValue !== null ? toNumber(d.dimValue) : '?')) : undefined,
        };
      });
    return { opset, inputs, outputs: (graph.output ?? []).map((o) => o.name ?? ''), nodes, initializers };
  } finally {
    await Promise.all([...files.values()].map((handle) => handle.close()));
  }
}

export { typeName as onnxTypeName, DT as ONNX_DATA_TYPE };
