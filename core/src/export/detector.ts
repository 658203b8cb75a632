import { stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { OnnxGraph } from '../onnx/graph.js';
import { DEFAULT_EXTERNAL_DATA_THRESHOLD, onnxDataType, serializeOnnxModel } from '../onnx/serialize.js';
import type { Detector } from '../pipeline/detector.js';
import type { OpenedDetector } from '../pipeline/open.js';
import { CORE_PACKAGE } from '../plugins/define.js';
import type { JsonObject, PreprocessSpec } from '../types.js';
import { EXPORT_OPSET, StageExportContext } from './context.js';

/** `metadata_props` key naming the layout of an exported detector; its value is `EXPORT_FORMAT`. */
export const EXPORT_FORMAT = 'transformaly-detector-onnx/1';

export interface ExportOptions {
  /** The .onnx file to write (replaced atomically); external data goes beside it. */
  out: string;
  /**
   * Take uint8 [N, H, W, 3] RGB pixels already at the model's size, and scale and normalise them inside the graph;
   * without it the input is float32 [N, 3, H, W], resized and normalised by the caller.
   */
  preprocess?: boolean;
  /**
   * Initializer bytes above which the weights go to `<name>.onnx.data` beside the model (default: protobuf's 2 GB
   * limit less headroom); `false` refuses a model that would need such a file (a browser loads one file).
   */
  externalDataThreshold?: number | false;
}

/** The model's input, as recorded in its metadata. */
export interface ExportedInput {
  name: string;
  type: 'float32' | 'uint8';
  shape: (number | string)[];
  layout: 'NCHW' | 'NHWC';
}

export interface ExportedOutput {
  name: string;
  type: 'float64' | 'bool';
  shape: string[];
  description: string;
}

export interface ExportedDetector {
  file: string;
  /** The file holding the weights when they were too large to embed. */
  dataFile?: string;
  /** Size of `file` in bytes. */
  bytes: number;
  input: ExportedInput;
  outputs: ExportedOutput[];
  threshold: number;
  /** The model's metadata_props (values are strings; `input`, `preprocessing`, `outputs`, `provenance` hold JSON). */
  metadata: Record<string, string>;
}

type Slot = 'backbone' | 'distiller' | 'scorers.pretrained' | 'scorers.finetuned' | 'combiner';

/**
 * Exports a fitted detector as one ONNX model (opset 17): the backbone with its taps, the students and their
 * per-block discrepancies, each space's scorer and the combiner, with every fitted parameter as an initializer.
 * Outputs the float64 normality scores `pretrained`, `finetuned` (with a distiller) and `combined`, and `anomalous`
 * (combined below the detector's threshold). Every stage must implement `exportOnnx`; one that does not is named in
 * the error. The file (and its external data, if any) is written atomically.
 */
export async function exportDetector(source: Detector | OpenedDetector, options: ExportOptions): Promise<ExportedDetector> {
  const built = await detectorGraph(source, options.preprocess ?? false);
  const single = options.externalDataThreshold === false;
  const threshold = typeof options.externalDataThreshold === 'number' ? options.externalDataThreshold : DEFAULT_EXTERNAL_DATA_THRESHOLD;
  const weights = built.graph.initializerBytes();
  if (single && weights > threshold) {
    throw new Error(`the detector's weights take ${weights} bytes, more than one ONNX file holds (${threshold}); this export needs a single file`);
  }
  const name = basename(options.out).replace(/\.onnx$/i, '') || 'detector';
  const model = await serializeOnnxModel(built.graph, {
    opset: EXPORT_OPSET,
    producerName: 'transformaly',
    producerVersion: CORE_PACKAGE.version,
    docString: `Transformaly detector (${built.metadata.stages}), exported by ${CORE_PACKAGE.name} ${CORE_PACKAGE.version}`,
    metadata: built.metadata,
    externalData: single ? undefined : { dir: dirname(options.out), name, threshold },
  });
  await writeFileAtomic(options.out, model.bytes);
  const dataFile = model.externalDataDir === undefined ? undefined : join(model.externalDataDir, `${name}.onnx.data`);
  return {
    file: options.out,
    dataFile,
    bytes: (await stat(options.out)).size,
    input: built.input,
    outputs: built.outputs,
    threshold: built.threshold,
    metadata: built.metadata,
  };
}

/** The detector's graph and what its metadata records. */
async function detectorGraph(source: Detector | OpenedDetector, preprocess: boolean) {
  const detector = 'manifest' in source ? source.detector : source;
  const manifest = 'manifest' in source ? source.manifest : undefined;
  const { parts, threshold, provenance } = detector;
  if (threshold === undefined) throw new Error('exportDetector: the detector is not fitted (fit it, or open a saved one)');
  const info = parts.backbone.info;
  const spec = info.preprocess;
  const [height, width] = info.imageSize;
  const graph = new OnnxGraph('transformaly_detector');

  const label = (slot: Slot, fallback: string) => {
    const record = provenance?.plugins[slot];
    return `the ${slot} stage (plugin "${record?.name ?? fallback}"${record?.version ? ` version ${record.version}` : ''})`;
  };
  /** Runs one stage's hook in its own context; checks it exists, returns values of the graph, and uses standard operators. */
  const hook = async <T>(slot: Slot, stage: { name?: string; exportOnnx?: unknown }, fallback: string, call: (ctx: StageExportContext) => T | Promise<T>, values: (result: T) => string[]) => {
    if (typeof stage.exportOnnx !== 'function') {
      throw new Error(`cannot export the detector: ${label(slot, fallback)} has no exportOnnx hook, so its computation cannot be written as ONNX (docs/Reference/Plugins.md, "Export")`);
    }
    const from = graph.nodes.length;
    let result: T;
    try {
      result = await call(new StageExportContext(graph, slot));
    } catch (error) {
      throw new Error(`cannot export the detector: exportOnnx of ${label(slot, fallback)} failed: ${(error as Error).message}`, { cause: error });
    }
    for (const value of values(result)) {
      if (typeof value !== 'string' || !graph.has(value)) {
        throw new Error(`cannot export the detector: exportOnnx of ${label(slot, fallback)} returned ${JSON.stringify(value)}, not the name of a value of the graph`);
      }
    }
    const foreign = graph.nodes.slice(from).find((n) => n.domain !== '' && n.domain !== 'ai.onnx');
    if (foreign) {
      throw new Error(
        `cannot export the detector: exportOnnx of ${label(slot, fallback)} used the operator ${foreign.domain}.${foreign.opType}; ` +
          `an exported detector uses the standard ONNX operators only (opset ${EXPORT_OPSET}), so that every runtime can run it`,
      );
    }
    return result;
  };

  let pixels: string;
  let input: ExportedInput;
  if (preprocess) {
    input = { name: 'images', type: 'uint8', shape: ['N', height, width, 3], layout: 'NHWC' };
    pixels = normaliseInGraph(graph, graph.input(input.name, 'uint8', input.shape), spec);
  } else {
    input = { name: 'pixels', type: 'float32', shape: ['N', 3, height, width], layout: 'NCHW' };
    pixels = graph.input(input.name, 'float32', input.shape);
  }

  const { backbone, distiller, scorers, combiner } = parts;
  const taps = distiller ? [...distiller.blocks] : [];
  const backboneValues = await hook('backbone', backbone, info.id, (ctx) => backbone.exportOnnx!(ctx, pixels, taps), (r) => [
    r?.features,
    ...taps.flatMap((b) => {
      const tap = r?.taps?.get(b);
      return [tap?.input as string, tap?.output as string];
    }),
  ]);
  const scores: Record<string, string> = {};
  scores.pretrained = await hook('scorers.pretrained', scorers.pretrained, scorers.pretrained.name, (ctx) => scorers.pretrained.exportOnnx!(ctx, backboneValues.features), (r) => [r]);
  if (distiller) {
    const features = await hook('distiller', distiller, distiller.name, (ctx) => distiller.exportOnnx!(ctx, backboneValues.taps), (r) => [r]);
    const finetuned = scorers.finetuned!;
    scores.finetuned = await hook('scorers.finetuned', finetuned, finetuned.name, (ctx) => finetuned.exportOnnx!(ctx, features), (r) => [r]);
  }
  const combined = await hook('combiner', combiner, combiner.name, (ctx) => combiner.exportOnnx!(ctx, { ...scores }), (r) => [r]);

  const outputs: ExportedOutput[] = [];
  const output = (value: string, name: string, type: ExportedOutput['type'], description: string) => {
    graph.output(graph.op('Identity', [value], {}, { output: name }), type, ['N']);
    outputs.push({ name, type, shape: ['N'], description });
  };
  output(scores.pretrained, 'pretrained', 'float64', 'normality score (log-likelihood) of the pre-trained features; higher is more normal');
  if (scores.finetuned) output(scores.finetuned, 'finetuned', 'float64', 'normality score of the fine-tuned (teacher-student discrepancy) features');
  output(combined, 'combined', 'float64', "the detector's normality score, the combiner's output");
  graph.output(graph.op('Less', [combined, graph.scalar(threshold, 'float64', 'threshold')], {}, { output: 'anomalous' }), 'bool', ['N']);
  outputs.push({ name: 'anomalous', type: 'bool', shape: ['N'], description: `combined < threshold (${threshold})` });

  const slots = (['backbone', 'distiller', 'scorers.pretrained', 'scorers.finetuned', 'combiner'] as const).filter(
    (s) => distiller || (s !== 'distiller' && s !== 'scorers.finetuned'),
  );
  const plugins = Object.fromEntries(slots.flatMap((s) => (provenance?.plugins[s] ? [[s, provenance.plugins[s]]] : [])));
  const metadata: Record<string, string> = {
    format: EXPORT_FORMAT,
    input: JSON.stringify(input),
    preprocessing: JSON.stringify(preprocessingRecord(spec, preprocess)),
    threshold: String(threshold),
    outputs: JSON.stringify(outputs),
    provenance: JSON.stringify({
      backbone: { id: info.id, sha256: info.sha256, untrained: info.untrained },
      plugins,
      // The code that wrote the graph; the folder's manifest says what fitted the detector.
      packages: provenance?.packages ?? {},
      ...(manifest ? { fitted: { createdAt: manifest.createdAt, packages: manifest.packages, ...(manifest.extra?.caseId ? { caseId: manifest.extra.caseId } : {}) } } : {}),
    }),
    stages: slots.map((s) => `${s} ${plugins[s]?.name ?? '?'}`).join(', '),
  };
  return { graph, input, outputs, threshold, metadata };
}

/**
 * The preprocessing the graph expects of its caller and the part it does itself, as data and as a sentence. The
 * project decodes to RGB in [0, 1] (alpha dropped, no EXIF rotation, 8-bit / 255, 16-bit / 65535), resizes the float
 * values with Pillow's filter, then normalises per channel.
 */
function preprocessingRecord(spec: PreprocessSpec, inGraph: boolean): JsonObject {
  const [h, w] = spec.size;
  const resize = `resize to ${h}x${w} (height x width) with Pillow's ${spec.resample} filter (antialiased when shrinking)`;
  const normalise = `(x - mean) / std per channel with mean [${spec.mean.join(', ')}] and std [${spec.std.join(', ')}]`;
  return {
    size: [h, w],
    resample: spec.resample,
    mean: [...spec.mean],
    std: [...spec.std],
    inGraph,
    caller: inGraph
      ? `decode to 8-bit RGB (alpha dropped, no EXIF rotation), ${resize}, round to uint8, NHWC`
      : `decode to RGB in [0, 1] (alpha dropped, no EXIF rotation; 8-bit / 255, 16-bit / 65535), ${resize} on the float values, ${normalise}, NCHW float32`,
    graph: inGraph ? `x / 255 in float32, then ${normalise} (computed in float64, rounded to float32), then NHWC -> NCHW` : 'none',
  };
}

/** uint8 NHWC -> float32 NCHW exactly as the project's preprocessor: float32(v / 255), then float32((x - mean) / std) in float64. */
function normaliseInGraph(g: OnnxGraph, images: string, spec: PreprocessSpec): string {
  const unit = g.op('Div', [g.op('Cast', [images], { to: onnxDataType('float32') }), g.scalar(255, 'float32', 'pixel_scale')]);
  const wide = g.op('Cast', [unit], { to: onnxDataType('float64') });
  const mean = g.initializer('preprocess.mean', { dims: [3], data: Float64Array.from(spec.mean) });
  const std = g.initializer('preprocess.std', { dims: [3], data: Float64Array.from(spec.std) });
  const normalised = g.op('Cast', [g.op('Div', [g.op('Sub', [wide, mean]), std])], { to: onnxDataType('float32') });
  return g.op('Transpose', [normalised], { perm: [0, 3, 1, 2] });
}
