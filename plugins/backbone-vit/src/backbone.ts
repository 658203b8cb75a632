import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DEFAULT_EXTERNAL_DATA_THRESHOLD,
  serializeOnnxModel,
  type Backbone,
  type BackboneInfo,
  type BackboneGraphValues,
  type BackboneOutput,
  type InferenceSession,
  type OnnxExportContext,
  type PreprocessSpec,
  type ProgressReporter,
  type Resample,
  type Runtime,
  type Tensor,
} from '@transformaly/core';
import { blockShapes, checkArch, gridOf, VIT_PRESETS, type VitArch, type VitWeights } from './arch.js';
import { locateCheckpoint, readVitCheckpoint } from './checkpoint.js';
import { exportVitGraph } from './export.js';
import { buildVitGraph, FEATURES, hiddenName, PIXELS, vitOpsetImports, type VitPrecision } from './graph.js';
import { resamplePositions } from './positions.js';
import { randomVitWeights } from './random.js';

/** Options of the backbone-vit plugin (the `backbone.options` of a config). */
export interface VitBackboneOptions {
  /** A .safetensors file, a `model.safetensors.index.json`, a folder holding either, or a hub id (`org/name`). */
  checkpoint?: string;
  /** Attention heads, where the checkpoint's config does not give them (bare timm files). */
  heads?: number;
  /** LayerNorm epsilon, where the checkpoint's config does not give it (timm's 1e-6 otherwise). */
  layerNormEps?: number;
  /** Input size; position embeddings are resampled bicubically when it differs from the checkpoint's. */
  imageSize?: number | [number, number];
  mean?: [number, number, number];
  std?: [number, number, number];
  resample?: Resample;
  /** Hub cache folder; default the Hugging Face convention (`HF_HUB_CACHE`, `HF_HOME/hub`, ~/.cache/huggingface/hub). */
  cacheDir?: string;
  /** Use only the hub cache. */
  offline?: boolean;
  endpoint?: string;
  revision?: string;
  /** An untrained model for tests and smoke runs instead of a checkpoint. */
  random?: RandomVitOptions;
  /** `int8`: the blocks' linear layers dynamically quantized (onnxruntime only; see `VitPrecision`). Default `float32`. */
  precision?: VitPrecision;
}

export interface RandomVitOptions {
  seed?: number;
  /** A preset name (`ViT-B/16`, ...; see `VIT_PRESETS`) or an architecture; fields left out come from ViT-B/16. */
  arch?: string | Partial<VitArch>;
  preprocess?: Partial<PreprocessSpec>;
}

export interface VitLoadContext {
  runtime: Runtime;
  progress?: ProgressReporter;
  /**
   * Folder for the external weight file when the graph's weights exceed `externalDataThreshold`; default a fresh
   * temporary folder, removed by `dispose`.
   */
  workDir?: string;
  /** Initializer bytes above which weights are stored beside the graph; default protobuf's limit minus headroom. */
  externalDataThreshold?: number;
}

const DEFAULT_MEAN: [number, number, number] = [0.5, 0.5, 0.5];
const DEFAULT_STD: [number, number, number] = [0.5, 0.5, 0.5];

/** A ViT running as one ONNX session: features always, hidden states of requested blocks on demand. */
export class ViTBackbone implements Backbone {
  private constructor(
    readonly info: BackboneInfo,
    private readonly session: InferenceSession,
    private readonly weights: VitWeights,
    private readonly cleanup: () => Promise<void>,
  ) {}

  /** Builds the graph from timm-layout weights and opens a session on `context.runtime`. */
  static async create(
    arch: VitArch,
    weights: VitWeights,
    provenance: { id: string; sha256: string; untrained: boolean; preprocess: PreprocessSpec },
    context: VitLoadContext,
    precision: VitPrecision = 'float32',
  ): Promise<ViTBackbone> {
    checkArch(arch);
    if (precision !== 'float32' && precision !== 'int8') throw new Error(`backbone-vit: precision must be 'float32' or 'int8', got ${JSON.stringify(precision)}`);
    const graph = buildVitGraph(arch, weights, precision);
    const threshold = context.externalDataThreshold ?? DEFAULT_EXTERNAL_DATA_THRESHOLD;
    let dir = context.workDir;
    let ownDir: string | undefined;
    if (graph.initializerBytes() > threshold && dir === undefined) dir = ownDir = await mkdtemp(join(tmpdir(), 'transformaly-vit-'));
    const removeDir = async () => {
      if (ownDir !== undefined) await rm(ownDir, { recursive: true, force: true });
    };
    let session: InferenceSession;
    try {
      const model = await serializeOnnxModel(graph, {
        opset: 17,
        opsetImports: vitOpsetImports(precision),
        docString: `ViT ${provenance.id}${precision === 'float32' ? '' : ` (${precision})`}`,
        externalData: dir === undefined ? undefined : { dir, threshold, name: `vit-${provenance.sha256.slice(0, 16)}` },
      });
      const task = context.progress?.task('creating the ViT session');
      session = await context.runtime.createSession(model);
      task?.done();
    } catch (error) {
      await removeDir();
      if (precision === 'int8') {
        throw new Error(`backbone-vit: precision 'int8' uses onnxruntime's DynamicQuantizeMatMul (runtime 'onnx'); runtime "${context.runtime.name}" could not load it: ${(error as Error).message}`, { cause: error });
      }
      throw error;
    }
    const { tokens } = gridOf(arch);
    const info: BackboneInfo = {
      id: provenance.id,
      sha256: provenance.sha256,
      untrained: provenance.untrained,
      imageSize: [arch.imageSize[0], arch.imageSize[1]],
      patchSize: arch.patchSize,
      width: arch.width,
      depth: arch.depth,
      heads: arch.heads,
      mlpDim: arch.mlpDim,
      layerNormEps: arch.layerNormEps,
      qkvBias: arch.qkvBias,
      tokens,
      preprocess: provenance.preprocess,
      ...(precision === 'float32' ? {} : { precision }),
    };
    return new ViTBackbone(info, session, weights, removeDir);
  }

  async forward(pixels: Tensor, options: { taps?: number[] } = {}): Promise<BackboneOutput> {
    const { imageSize, depth, width } = this.info;
    const [n, channels, h, w] = pixels.dims;
    if (pixels.dims.length !== 4 || channels !== 3 || h !== imageSize[0] || w !== imageSize[1]) {
      throw new Error(`ViT ${this.info.id}: pixels must be [N, 3, ${imageSize[0]}, ${imageSize[1]}], got [${pixels.dims.join(', ')}]`);
    }
    if (pixels.data.length !== n * 3 * h * w) {
      throw new Error(`ViT ${this.info.id}: pixels of dims [${pixels.dims.join(', ')}] need ${n * 3 * h * w} values, got ${pixels.data.length}`);
    }
    const taps = [...new Set(options.taps ?? [])].sort((a, b) => a - b);
    for (const i of taps) {
      if (!Number.isInteger(i) || i < 0 || i >= depth) throw new Error(`ViT ${this.info.id}: tap ${i} is not a block index (0..${depth - 1})`);
    }
    const outputs = new Set([FEATURES]);
    for (const i of taps) {
      outputs.add(hiddenName(i));
      outputs.add(hiddenName(i + 1));
    }
    const result = await this.session.run({ [PIXELS]: pixels }, [...outputs]);
    const features = result[FEATURES];
    const map = new Map<number, { input: Tensor; output: Tensor }>();
    for (const i of taps) map.set(i, { input: result[hiddenName(i)], output: result[hiddenName(i + 1)] });
    return { features: { rows: n, cols: width, data: features.data }, taps: map };
  }

  /** Copies of one block's weights, timm names and torch orientation (`attn.qkv.weight` is [3 * width, width]). */
  blockWeights(index: number): Record<string, Tensor> {
    if (!Number.isInteger(index) || index < 0 || index >= this.info.depth) {
      throw new Error(`ViT ${this.info.id}: block ${index} does not exist (0..${this.info.depth - 1})`);
    }
    const out: Record<string, Tensor> = {};
    for (const name of Object.keys(blockShapes(this.info))) {
      const t = this.weights.get(`blocks.${index}.${name}`)!;
      out[name] = { dims: [...t.dims], data: t.data.slice() };
    }
    return out;
  }

  /** The same graph as `forward` runs, appended to an exported detector's (export.ts). */
  exportOnnx(ctx: OnnxExportContext, pixels: string, taps: readonly number[]): BackboneGraphValues {
    const { imageSize, patchSize, width, depth, heads, mlpDim, layerNormEps, qkvBias, precision } = this.info;
    const arch = { imageSize, patchSize, width, depth, heads, mlpDim, layerNormEps, qkvBias };
    return exportVitGraph(ctx, arch, this.weights, (precision ?? 'float32') as VitPrecision, pixels, taps);
  }

  async dispose(): Promise<void> {
    await this.session.dispose();
    await this.cleanup();
  }
}

function imageSizeOption(value: number | [number, number] | undefined): [number, number] | undefined {
  if (value === undefined) return undefined;
  const pair: [number, number] = typeof value === 'number' ? [value, value] : [value[0], value[1]];
  if (!pair.every((v) => Number.isInteger(v) && v > 0)) throw new Error(`backbone-vit: imageSize must be a positive integer or [height, width], got ${JSON.stringify(value)}`);
  return pair;
}

/** Resamples the position embeddings when the wanted image size differs from the one they were trained at. */
function atImageSize(arch: VitArch, weights: VitWeights, imageSize: [number, number] | undefined): VitArch {
  if (!imageSize || (imageSize[0] === arch.imageSize[0] && imageSize[1] === arch.imageSize[1])) return arch;
  const resized: VitArch = { ...arch, imageSize };
  checkArch(resized, 'imageSize option');
  const from = gridOf(arch);
  const to = gridOf(resized);
  weights.set('pos_embed', resamplePositions(weights.get('pos_embed')!, [from.rows, from.cols], [to.rows, to.cols]));
  return resized;
}

/** Loads a checkpoint (or makes a random model) as configured by the plugin's options. */
export async function loadVitBackbone(options: VitBackboneOptions, context: VitLoadContext): Promise<ViTBackbone> {
  if (options.random !== undefined && options.checkpoint !== undefined) {
    throw new Error('backbone-vit: give either checkpoint or random, not both');
  }
  if (options.random !== undefined) {
    return randomVit(
      {
        ...options.random,
        preprocess: { ...options.random.preprocess, ...definedOnly({ mean: options.mean, std: options.std, resample: options.resample }) },
        arch: withImageSize(options.random.arch, imageSizeOption(options.imageSize)),
      },
      context,
      options.precision,
    );
  }
  if (options.checkpoint === undefined) throw new Error('backbone-vit: the checkpoint option is required (a file, a folder or a hub id), or random for an untrained model');
  const imageSize = imageSizeOption(options.imageSize);
  const progress = context.progress;
  const path = await locateCheckpoint(options.checkpoint, {
    cacheDir: options.cacheDir,
    offline: options.offline,
    endpoint: options.endpoint,
    revision: options.revision,
    progress,
  });
  const checkpoint = await readVitCheckpoint(
    path,
    { heads: options.heads, layerNormEps: options.layerNormEps, imageSize, resample: options.resample },
    progress,
  );
  const arch = atImageSize(checkpoint.arch, checkpoint.weights, imageSize);
  const fromConfig = checkpoint.preprocess;
  if (fromConfig.size && !imageSize && (fromConfig.size[0] !== arch.imageSize[0] || fromConfig.size[1] !== arch.imageSize[1])) {
    progress?.warn(
      `${options.checkpoint}: the preprocessing config resizes to ${fromConfig.size.join('x')} but the position embeddings are for ` +
        `${arch.imageSize.join('x')}; images are resized to ${arch.imageSize.join('x')} (set imageSize to run at another size)`,
    );
  }
  const missing = (['resample', 'mean', 'std'] as const).filter((k) => options[k] === undefined && fromConfig[k] === undefined);
  if (missing.length > 0) {
    progress?.warn(
      `${options.checkpoint}: no preprocessing config gives ${missing.join(', ')}; using ` +
        missing.map((k) => `${k} ${k === 'resample' ? 'bicubic' : '0.5,0.5,0.5'}`).join(', ') +
        ' (set them in the backbone options if the model was trained otherwise)',
    );
  }
  const preprocess: PreprocessSpec = {
    size: [arch.imageSize[0], arch.imageSize[1]],
    resample: options.resample ?? fromConfig.resample ?? 'bicubic',
    mean: options.mean ?? fromConfig.mean ?? DEFAULT_MEAN,
    std: options.std ?? fromConfig.std ?? DEFAULT_STD,
  };
  checkPreprocess(preprocess);
  return ViTBackbone.create(arch, checkpoint.weights, { id: options.checkpoint, sha256: checkpoint.sha256, untrained: false, preprocess }, context, options.precision);
}

function withImageSize(arch: RandomVitOptions['arch'], imageSize: [number, number] | undefined): RandomVitOptions['arch'] {
  if (!imageSize) return arch;
  const base = typeof arch === 'string' ? presetArch(arch) : (arch ?? {});
  return { ...base, imageSize };
}

function presetArch(name: string): VitArch {
  const preset = VIT_PRESETS[name];
  if (!preset) throw new Error(`backbone-vit: unknown architecture preset "${name}" (known: ${Object.keys(VIT_PRESETS).join(', ')})`);
  return preset;
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function checkPreprocess(spec: PreprocessSpec): void {
  for (const key of ['mean', 'std'] as const) {
    const v = spec[key];
    if (!Array.isArray(v) || v.length !== 3 || !v.every((x) => Number.isFinite(x))) throw new Error(`backbone-vit: ${key} must be three numbers, got ${JSON.stringify(v)}`);
  }
  if (!spec.std.every((x) => x > 0)) throw new Error(`backbone-vit: std must be positive, got ${JSON.stringify(spec.std)}`);
  if (!['bilinear', 'bicubic', 'nearest'].includes(spec.resample)) throw new Error(`backbone-vit: resample must be bilinear, bicubic or nearest, got ${JSON.stringify(spec.resample)}`);
}

/** An untrained ViT (info.untrained is true, id `random:<seed>`), for tests and smoke runs. */
export async function randomVit(options: RandomVitOptions, context: VitLoadContext, precision: VitPrecision = 'float32'): Promise<ViTBackbone> {
  const seed = options.seed ?? 0;
  if (!Number.isInteger(seed)) throw new Error(`backbone-vit: random seed must be an integer, got ${seed}`);
  const base = typeof options.arch === 'string' ? presetArch(options.arch) : VIT_PRESETS['ViT-B/16'];
  const arch: VitArch = { ...base, ...(typeof options.arch === 'object' ? options.arch : {}) };
  if (typeof options.arch === 'object' && options.arch.width !== undefined && options.arch.mlpDim === undefined) arch.mlpDim = 4 * arch.width;
  checkArch(arch, 'random ViT');
  const weights = randomVitWeights(arch, seed);
  const hash = createHash('sha256');
  for (const [name, t] of [...weights].sort(([a], [b]) => (a < b ? -1 : 1))) {
    hash.update(`${name}:${t.dims.join('x')}\n`);
    hash.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  const preprocess: PreprocessSpec = {
    size: [arch.imageSize[0], arch.imageSize[1]],
    resample: options.preprocess?.resample ?? 'bicubic',
    mean: options.preprocess?.mean ?? DEFAULT_MEAN,
    std: options.preprocess?.std ?? DEFAULT_STD,
  };
  checkPreprocess(preprocess);
  return ViTBackbone.create(arch, weights, { id: `random:${seed}`, sha256: hash.digest('hex'), untrained: true, preprocess }, context, precision);
}
