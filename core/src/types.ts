// Every public type of Transformaly lives in this file, so that a plugin author reads one page.
import type { ContainerModule } from 'inversify';

// ---------------------------------------------------------------------------
// Numbers
// ---------------------------------------------------------------------------

/** A row-major matrix: element (i, j) is `data[i * cols + j]`. */
export interface Matrix {
  rows: number;
  cols: number;
  data: Float32Array | Float64Array;
}

/** A dense float32 tensor in row-major (C) order, e.g. NCHW pixels or [N, tokens, width] hidden states. */
export interface Tensor {
  dims: number[];
  data: Float32Array;
}

/** Named arrays plus JSON metadata: what a fitted stage exports and is restored from (stored as safetensors). */
export interface StageState {
  meta: JsonObject;
  arrays: Record<string, ArrayEntry>;
}

export interface ArrayEntry {
  dims: number[];
  data: Float32Array | Float64Array | Int32Array | Uint8Array;
}

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/** A JSON schema (draft 2020-12 subset understood by ajv). */
export type JsonSchema = { [key: string]: unknown };

// ---------------------------------------------------------------------------
// Images and data
// ---------------------------------------------------------------------------

export type Split = 'train' | 'test';

/** A decoded RGB image, HWC interleaved, values in [0, 1] (8- and 16-bit sources are scaled). */
export interface RgbImage {
  width: number;
  height: number;
  data: Float32Array;
}

/** One image of a data set: cheap to list, decoded only when `load` is called. */
export interface ImageItem {
  /** Stable identifier: a file path, or e.g. `t10k-images-idx3-ubyte.gz#17` for an image inside a container file. */
  id: string;
  /** Class name. */
  label: string;
  load(): Promise<RgbImage>;
}

/** A data set with named classes and a train and a test split. */
export interface ImageSource {
  readonly name: string;
  classes(): Promise<string[]>;
  items(split: Split): Promise<ImageItem[]>;
}

export type Resample = 'bilinear' | 'bicubic' | 'nearest';

/** How pixels become model input: resize to `size` (height, width), then (x - mean) / std per channel. */
export interface PreprocessSpec {
  size: [number, number];
  resample: Resample;
  mean: [number, number, number];
  std: [number, number, number];
}

export interface Preprocessor {
  readonly spec: PreprocessSpec;
  /** Returns an NCHW float32 tensor. */
  run(images: RgbImage[]): Promise<Tensor>;
}

/** One protocol case: which classes are normal, and the resulting train set and labelled test set. */
export interface ProtocolCase {
  /** e.g. `unimodal/T-shirt` or `multimodal/Trouser`. */
  id: string;
  mode: 'unimodal' | 'multimodal' | 'folder';
  /** The class the case is named after: the normal class (unimodal) or the anomalous one (multimodal). */
  className: string;
  train: ImageItem[];
  test: LabelledItem[];
}

export interface LabelledItem {
  item: ImageItem;
  anomalous: boolean;
}

// ---------------------------------------------------------------------------
// Engines and models
// ---------------------------------------------------------------------------

/** Where a runtime computes: the CPU, CUDA, or a GPU through a portable API (WebGPU). */
export type Device = 'cpu' | 'cuda' | 'gpu';

/** A serialized ONNX ModelProto, plus where its external data lives when the weights exceed protobuf's 2 GB limit. */
export interface OnnxModel {
  bytes: Uint8Array;
  /** Folder that external-data `location`s are relative to; absent when every initializer is embedded. */
  externalDataDir?: string;
}

export interface SessionOptions {
  /** Names of graph outputs to compute; all when absent. */
  outputs?: string[];
}

export interface InferenceSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  run(feeds: Record<string, Tensor>, outputs?: string[]): Promise<Record<string, Tensor>>;
  dispose(): Promise<void>;
}

/** An execution engine for ONNX graphs (onnxruntime, tfjs, ...). */
export interface Runtime {
  readonly name: string;
  readonly device: Device;
  readonly threads: number;
  /** Whether `trainer` can be used to train students on this runtime. */
  readonly canTrain: boolean;
  createSession(model: OnnxModel, options?: SessionOptions): Promise<InferenceSession>;
  /** What the engine computes on (backend, adapter, ...), recorded in a run's results.json; may start the engine. */
  describe?(): Promise<JsonObject>;
  dispose(): Promise<void>;
}

/** Architecture of a ViT-like backbone. */
export interface BackboneInfo {
  /** Where the weights came from: a hub id, a path, or `random:<seed>` for an untrained test model. */
  id: string;
  /** sha256 of the weights file(s), for provenance in results. */
  sha256: string;
  /** True when the weights are random (tests and smoke runs only): every output must say so. */
  untrained: boolean;
  imageSize: [number, number];
  patchSize: number;
  width: number;
  depth: number;
  heads: number;
  mlpDim: number;
  layerNormEps: number;
  qkvBias: boolean;
  /** Number of tokens per image (patches + CLS). */
  tokens: number;
  preprocess: PreprocessSpec;
}

export interface BackboneOutput {
  /** Pre-trained features: the CLS token after the final LayerNorm, [N, width]. */
  features: Matrix;
  /** For each requested block index: its input and output hidden states, [N, tokens, width]. */
  taps: Map<number, { input: Tensor; output: Tensor }>;
}

export interface Backbone {
  readonly info: BackboneInfo;
  /** `pixels` is NCHW, already preprocessed. */
  forward(pixels: Tensor, options?: { taps?: number[] }): Promise<BackboneOutput>;
  /** The weights of one transformer block, named in the timm layout (`norm1.weight`, `attn.qkv.weight`, ...). */
  blockWeights(index: number): Record<string, Tensor>;
  dispose(): Promise<void>;
}

// ---------------------------------------------------------------------------
// Fitted stages
// ---------------------------------------------------------------------------

/** A density model of one feature space. Scores are normality scores: higher means more normal. */
export interface DensityScorer {
  readonly name: string;
  fit(X: Matrix): void | Promise<void>;
  scoreSamples(Y: Matrix): Float64Array | Promise<Float64Array>;
  exportState(): StageState;
  importState(state: StageState): void;
}

export type ScorerFactory = (options: unknown) => DensityScorer;

/** Combines the per-space normality scores of the same images into one. */
export interface FeatureCombiner {
  readonly name: string;
  /** Called with each space's scores on the training images. */
  fit(trainScores: Record<string, Float64Array>): void;
  combine(scores: Record<string, Float64Array>): Float64Array;
  exportState(): StageState;
  importState(state: StageState): void;
}

/**
 * Everything a distiller needs during `fit`: the teacher, a stream of its input batches, and where to keep
 * checkpoints. (A distiller reports progress to the `ProgressReporter` it was constructed with.)
 */
export interface DistillerFitContext {
  backbone: Backbone;
  /** Yields preprocessed batches of the training (and held-out) images, in a fixed order per epoch. */
  trainBatches(epoch: number): AsyncIterable<Tensor>;
  validationBatches(): AsyncIterable<Tensor>;
  checkpointDir?: string;
  /**
   * What else decided the training batches (the images and their split, batch size, seed), from the detector's fit;
   * a checkpoint records it and is resumed only by a fit with the same.
   */
  setup?: JsonObject;
  signal?: AbortSignal;
}

/** The teacher-student stage: trains students on normal images, then turns taps into discrepancy features. */
export interface Distiller {
  readonly name: string;
  /** Block indices whose taps `features` needs. */
  readonly blocks: readonly number[];
  fit(context: DistillerFitContext): Promise<void>;
  /** One row per image: per selected block, the mean squared teacher-student discrepancy. */
  features(output: BackboneOutput): Promise<Matrix>;
  exportState(): StageState;
  importState(state: StageState): void;
  /** Releases engine sessions held for scoring; called when its detector is disposed. */
  dispose?(): Promise<void>;
}

/** The shape of one student: a pre-norm ViT block like the teacher's block it learns to reproduce. */
export interface BlockSpec {
  width: number;
  heads: number;
  mlpDim: number;
  layerNormEps: number;
  qkvBias: boolean;
  /** Tokens per image (patches + CLS). */
  tokens: number;
}

/** Adam hyper-parameters, as torch.optim.Adam (no weight decay). */
export interface AdamSettings {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
}

/**
 * One student block under training. Weights use the timm names and torch layouts of `Backbone.blockWeights`
 * (`norm1.weight`, `attn.qkv.weight` [3D, D], `mlp.fc1.weight` [M, D], ...). Inputs and targets are [N, tokens, width].
 */
export interface StudentTrainer {
  readonly spec: BlockSpec;
  /** One training step on a batch: forward, MSE over all tokens and channels, gradients, Adam update. Returns the loss before the update. */
  step(input: Tensor, target: Tensor): Promise<number>;
  /** Loss and gradients without updating anything (for checks against an independent autograd). */
  lossAndGradients(input: Tensor, target: Tensor): Promise<{ loss: number; gradients: Record<string, Tensor> }>;
  /** Per image: the mean over tokens and channels of (student(input) - target)^2. */
  discrepancy(input: Tensor, target: Tensor): Promise<Float64Array>;
  /** Current weights by name, after every step already asked for (async: a GPU engine reads them back). */
  weights(): Promise<Record<string, Tensor>>;
  /** Weights, Adam moments and step count, for checkpoints; `importState` restores them exactly. */
  exportState(): Promise<StageState>;
  importState(state: StageState): void;
  dispose(): Promise<void>;
}

/** A runtime that can train students (onnxruntime through explicit backward graphs, tfjs through its autodiff). */
export interface TrainableRuntime extends Runtime {
  createStudentTrainer(spec: BlockSpec, initialWeights: Record<string, Tensor>, adam: AdamSettings): Promise<StudentTrainer>;
}

// ---------------------------------------------------------------------------
// Progress
// ---------------------------------------------------------------------------

export interface ProgressTask {
  /** Advance by `n` units; `detail` replaces the task's status text (e.g. `loss 0.0123`). */
  tick(n?: number, detail?: string): void;
  done(detail?: string): void;
}

export interface ProgressReporter {
  task(label: string, total?: number): ProgressTask;
  info(message: string): void;
  warn(message: string): void;
}

// ---------------------------------------------------------------------------
// Plugins
// ---------------------------------------------------------------------------

/**
 * A plugin is a plain object. `register` receives the options already validated against `optionsSchema`
 * and returns the bindings of its implementations; it never reads the container itself.
 */
export interface TransformalyPlugin<Options = any> {
  name: string;
  /** The plugin's version, recorded in saved detectors; when absent, that of the package it was loaded from. */
  version?: string;
  /** JSON schema of the options the config may give this plugin. */
  optionsSchema?: JsonSchema;
  /** One line for `transformaly plugins`. */
  description?: string;
  register(options: Options): ContainerModule;
}

/**
 * How a saved detector names the plugin of one of its stages: by name and version, and where it came from. A detector
 * folder never makes Transformaly import a file: `builtin` plugins ship with the core, `package` ones are imported
 * from the installed packages by `package`, and `file` or `code` ones must be given by the caller (`--plugin NAME=PATH`,
 * or `plugins: { [name]: plugin }`); `path` is only a hint for the user.
 */
export interface PluginRecord {
  name: string;
  /** null when neither the plugin nor its package declares one. */
  version: string | null;
  source: 'builtin' | 'package' | 'file' | 'code';
  /** The module specifier it was imported from (`source: 'package'`). */
  package?: string;
  /** The file it was loaded from when fitted (`source: 'file'`). */
  path?: string;
}

/** How the config names a plugin: a built-in name, a package name, or a path to a .ts/.js file. */
export interface StageRef<Options = Record<string, unknown>> {
  use: string;
  options?: Options;
}

// ---------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------

/** `transformaly.config.ts`: every stage is a `StageRef`; built-in names need no install. */
export interface TransformalyConfig {
  /** Image source: `folder`, `normal-abnormal`, `idx`, `cifar10`, `cifar100`, or a plugin. */
  data: StageRef | string;
  protocol?: {
    mode: 'unimodal' | 'multimodal';
    /** Classes to run a case for; all classes when absent. */
    classes?: 'all' | string[];
    /** Caps for quick runs: normal training images per case, test images per class (a seeded choice). */
    limit?: { train?: number; testPerClass?: number };
  };
  backbone: StageRef | string;
  runtime?: StageRef | string;
  /** `false` keeps only the pre-trained feature space. */
  distiller?: StageRef | string | false;
  scorers?: {
    pretrained?: StageRef | string;
    finetuned?: StageRef | string;
  };
  /** `sum` (the paper) or `zscore`. */
  combiner?: StageRef | string;
  /** Images per batch for decoding and the backbone. */
  batchSize?: number;
  /** List and skip files that cannot be decoded instead of stopping. */
  skipBadFiles?: boolean;
  seed?: number;
  /** Fraction of normal training images held out (best-epoch choice and threshold calibration). */
  validationFraction?: number;
  /** Decision threshold on the combined normality score, calibrated on held-out normal images. */
  threshold?: { quantile: number } | { contamination: number };
  /** Where `run` writes `results/<run-id>/`. */
  outputDir?: string;
  /** Extra plugins to load (e.g. a third-party stage referenced by name elsewhere). */
  plugins?: string[];
}

/** The config after validation: defaults filled in, every stage a `StageRef`, paths absolute. */
export interface ResolvedConfig {
  data: StageRef;
  protocol: { mode: 'unimodal' | 'multimodal'; classes: 'all' | string[]; limit?: { train?: number; testPerClass?: number } };
  backbone: StageRef;
  runtime: StageRef;
  distiller: StageRef | false;
  scorers: { pretrained: StageRef; finetuned: StageRef };
  combiner: StageRef;
  batchSize: number;
  skipBadFiles: boolean;
  seed: number;
  validationFraction: number;
  threshold: { quantile: number } | { contamination: number };
  outputDir: string;
  plugins: string[];
}
