// Every public type of Transformaly lives in this file, so that a plugin author reads one page.
import type { ContainerModule } from 'inversify';
import type { OnnxGraph, OnnxTensorData } from './onnx/graph.js';

// ---------------------------------------------------------------------------
// Numbers
// ---------------------------------------------------------------------------

/** A row-major matrix: element (i, j) is `data[i * cols + j]`. */
export interface Matrix {
  rows: number;
  cols: number;
  data: Float32Array | Float64Array;
}

/** A float64 matrix: what the numeric helpers return. */
export interface Matrix64 extends Matrix {
  data: Float64Array;
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
  /** Ends the thread it may run in. */
  dispose?(): Promise<void>;
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
  /**
   * Compiles one of the core's small numeric graphs (float64 products, distances, top-k: see `NumericEngine`) with
   * this runtime's threads. Absent on a runtime without float64 kernels (tfjs): a pipeline on such a runtime runs its
   * numerics on the `onnx` runtime plugin instead, and says so.
   */
  createNumericSession?(graph: Uint8Array): Promise<NumericSession>;
  /** Releases every session it created, numeric ones included. */
  dispose(): Promise<void>;
}

/** A tensor of the numeric graphs: float64 for the scorers' products, float32 for screening, int64 for shapes and indices. */
export interface NumericTensor {
  type: 'float32' | 'float64' | 'int64';
  dims: number[];
  data: Float32Array | Float64Array | BigInt64Array;
}

/** One compiled numeric graph; symbolic dimensions, so one session serves every shape. */
export interface NumericSession {
  run(feeds: Record<string, NumericTensor>): Promise<Record<string, NumericTensor>>;
  dispose(): Promise<void>;
}

export type FloatType = 'float32' | 'float64';

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
  /** Element type of the product (default float64). float32 halves the time at ~1e-7 relative rounding per term. */
  precision?: FloatType;
}

/**
 * The engine behind the numeric helpers (`covariance`, `logGaussianDensities`, `NeighborIndex`, ...): large products
 * run as small ONNX graphs on the pipeline's runtime, with its threads, and are released with the pipeline. Stages get
 * it from their context (`ctx.numeric`); a test makes one with `createNumericEngine(runtime)`.
 */
export interface NumericEngine {
  /** Name of the runtime whose kernels run the graphs, e.g. `onnx`. */
  readonly runtime: string;
  /** `op(A) * op(B)`; the result is float64 whatever the precision of the product. */
  matmul(a: Matrix, b: Matrix, options?: MatmulOptions): Promise<Matrix64>;
  /** For every row x of X and every group g: sum over the group's columns of (x W + offset)^2, an [n, groups] matrix. */
  groupedSqNorms(X: Matrix, W: Matrix, offset: Float64Array, groups: number, precision?: FloatType): Promise<Matrix64>;
  /** Per row q of Q: the `k` smallest ||t||^2 - 2 q.t over the rows t of T (ascending) and their row indices. */
  screenNearest(Q: Matrix, T: Matrix, tn: Float32Array | Float64Array, k: number, precision: FloatType): Promise<{ values: Float64Array; indices: BigInt64Array }>;
  /** Squared Euclidean distances between the rows of A and B, given their squared row norms. */
  sqDistWithNorms(A: Matrix, B: Matrix, an: Float64Array, bn: Float64Array, precision?: FloatType): Promise<Matrix64>;
  /** For K components: sum_i w_ik (x_i - m_k)(x_i - m_k)^T as K concatenated [d, d] matrices (`sqrtWeights` [K, n]). */
  weightedScatter(X: Matrix, means: Float64Array, sqrtWeights: Float64Array, components: number): Promise<Float64Array>;
  /** Releases the compiled graphs (they are compiled again on demand). */
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
  /** How the forward computes when not in float32 (e.g. `int8`): the same weights give slightly different outputs. */
  precision?: string;
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
  /**
   * Appends `forward` to an exported detector's graph (`transformaly export`): `pixels` is a float32 [N, 3, H, W]
   * value; returns the float32 [N, width] features and, for each block in `taps`, its input and output hidden states
   * [N, tokens, width]. See `OnnxExportContext`.
   */
  exportOnnx?(ctx: OnnxExportContext, pixels: string, taps: readonly number[]): BackboneGraphValues | Promise<BackboneGraphValues>;
  dispose(): Promise<void>;
}

/** The values a backbone's `exportOnnx` returns: the names of its features and of its taps' hidden states. */
export interface BackboneGraphValues {
  features: string;
  taps: Map<number, { input: string; output: string }>;
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
  /**
   * Appends `scoreSamples` of the fitted model to an exported detector's graph: `features` is a float32 (the
   * backbone's) or float64 (a distiller's) [N, d] value, to cast to what the scorer computes in; returns a float64 [N]
   * value of the same scores. See `OnnxExportContext`.
   */
  exportOnnx?(ctx: OnnxExportContext, features: string): string | Promise<string>;
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
  /**
   * Appends `combine` of the fitted combiner to an exported detector's graph: `scores` maps each space to a float64
   * [N] value; returns the float64 [N] combined value. See `OnnxExportContext`.
   */
  exportOnnx?(ctx: OnnxExportContext, scores: Record<string, string>): string | Promise<string>;
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
  /**
   * The teacher's taps of these same batches (`trainBatches(epoch)` and `validationBatches()` through the backbone),
   * each image's taps computed once and replayed on later passes (the Detector's teacher cache, which also keeps the
   * final CLS for the pre-trained features). Absent where nobody records them: stream the teacher then.
   */
  teacherTaps?(request: TeacherTapsRequest): TapSource;
}

/** A block's input and output hidden states for a batch of images, [N, tokens, width] each. */
export interface BlockTap {
  input: Tensor;
  output: Tensor;
}

/** One batch of the teacher's taps at every student's block. */
export interface TapBatch {
  images: number;
  taps: ReadonlyMap<number, BlockTap>;
}

/**
 * Where the training loop's batches come from: the teacher streamed (`streamTeacherTaps`: one pass per batch), or
 * the fit context's `teacherTaps` (each image once, replayed afterwards).
 */
export interface TapSource {
  /** The training batches of epoch `epoch` (0-based), in that epoch's order. */
  train(epoch: number): AsyncIterable<TapBatch>;
  /** The held-out batches; none when there are no held-out images. */
  validation(): AsyncIterable<TapBatch>;
}

/** How recorded taps are stored: float32 (exact), or 16-bit floats at half the memory and disk. */
export type TapPrecision = 'float32' | 'float16' | 'bfloat16';

export interface TeacherTapsRequest {
  /** Blocks whose input and output are recorded. */
  blocks: readonly number[];
  /** The students' shape; every tap is checked against it. */
  spec: BlockSpec;
  precision: TapPrecision;
  /** Bytes of recorded taps held in memory; the rest go to a temporary file, deleted when the fit ends. */
  memoryBytes: number;
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
  /**
   * Appends `features` of the fitted distiller to an exported detector's graph: `taps` holds, for each of `blocks`,
   * the teacher block's input and output hidden states (float32 [N, tokens, width] values); returns the [N,
   * blocks.length] value of the features (float32 or float64, as `features` computes them). See `OnnxExportContext`.
   */
  exportOnnx?(ctx: OnnxExportContext, taps: ReadonlyMap<number, { input: string; output: string }>): string | Promise<string>;
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
  /** Trained students for scoring, all blocks in one engine call per batch; without it each student's trainer scores. */
  createStudentScorer?(spec: BlockSpec, students: readonly Record<string, Tensor>[]): Promise<StudentScorer>;
}

/** Fixed students scoring together: per image, each student's `StudentTrainer.discrepancy`. */
export interface StudentScorer {
  /** `taps[i]` is the i-th student's block input and teacher output; returns [N, students], row-major. */
  discrepancies(taps: readonly BlockTap[]): Promise<Matrix>;
  dispose(): Promise<void>;
}

// ---------------------------------------------------------------------------
// Export (`transformaly export`: a fitted detector as one ONNX model)
// ---------------------------------------------------------------------------

/**
 * What a stage's `exportOnnx` hook appends its computation to: the graph of the whole detector under construction.
 * The hook gets its inputs as value names, adds nodes (`ctx.graph.op(...)`) and its fitted parameters as constants
 * (`ctx.weight(...)`), and returns the names of its outputs. Only operators of the default ONNX domain at `opset`
 * may be used, so that the model runs in every ONNX runtime, onnxruntime-web included; the exporter refuses others.
 */
export interface OnnxExportContext {
  /** The graph being built (the core's `OnnxGraph` builder); value names made by `graph.op` are fresh. */
  readonly graph: OnnxGraph;
  /** The stage's config path (`scorers.pretrained`, `combiner`, ...): the prefix of the names it adds. */
  readonly scope: string;
  /** Version of the default ONNX operator set the model declares (17). */
  readonly opset: number;
  /** Adds a constant (a fitted parameter) named `<scope>.<name>`; returns its value name. */
  weight(name: string, tensor: OnnxTensorData): string;
  /**
   * Appends a graph built on its own (a backbone's, say): its inputs are bound to the values named in `inputs`, its
   * other names are prefixed with the scope. Returns the value name of each of its outputs, by output name.
   */
  append(sub: OnnxGraph, inputs: Record<string, string>): Record<string, string>;
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

/** The stages a plugin may provide, by the key it declares them under, and the contract each must implement. */
export interface StageContracts {
  data: ImageSource;
  runtime: Runtime;
  backbone: Backbone;
  distiller: Distiller;
  scorer: DensityScorer;
  combiner: FeatureCombiner;
}

export type StageKind = keyof StageContracts;

/** What every stage's `create` gets besides its options. */
export interface StageContext {
  /** The config slot this instance serves, e.g. `scorers.finetuned`; for messages. */
  readonly slot: string;
  readonly progress: ProgressReporter;
}

/** The context of each kind of stage: what it may need from the pipeline. */
export interface StageContexts {
  data: StageContext;
  runtime: StageContext;
  backbone: StageContext & { readonly runtime: Runtime };
  /** The backbone reaches a distiller once, in `fit`'s context. */
  distiller: StageContext & { readonly runtime: Runtime };
  scorer: StageContext & { readonly numeric: NumericEngine };
  combiner: StageContext & { readonly numeric: NumericEngine };
}

/** One stage of a typed plugin. */
export interface StageDefinition<K extends StageKind = StageKind, Options = any> {
  /** JSON schema of the stage's `options` in the config; without it the stage takes no options. */
  optionsSchema?: JsonSchema;
  /** One line for `transformaly plugins`, when the plugin's own does not say it. */
  description?: string;
  /**
   * Checks what a schema cannot say (values that must agree with each other); runs with the config's validation, and
   * what it throws becomes an issue at the stage's `options`.
   */
  checkOptions?(options: Options): void;
  /**
   * Builds one instance from validated options. The core calls it once per pipeline for data, runtime and backbone,
   * and once per detector (and feature space) for distillers, scorers and combiners, so fitted state is never shared.
   */
  create(options: Options, ctx: StageContexts[K]): StageContracts[K] | Promise<StageContracts[K]>;
}

/**
 * A plugin is a plain object with a name, a version and its stages:
 * `{ name, version, stages: { scorer: { optionsSchema, create(options, ctx) } } }`. The stage key decides the
 * interface `create` returns. `definePlugin` checks the types; `pluginPackage(import.meta.url)` reads name, version and
 * aliases from the plugin's package.json.
 *
 * The advanced form replaces `stages` by `register(options)`, returning an inversify 8 `ContainerModule` that binds
 * `TOKENS` itself (options checked against the top-level `optionsSchema`); its author chooses the scopes.
 */
export interface TransformalyPlugin<Options = any> {
  /** The package name for a published plugin. */
  name: string;
  /** Recorded in saved detectors and results; a plugin loaded from a package may leave it to the package.json. */
  version: string;
  /** One line for `transformaly plugins`. */
  description?: string;
  /** Short names a config may use, e.g. `['gaussian']`; an installed package declares them in its package.json. */
  aliases?: string[];
  /** Versions of the engines it runs on (e.g. `{ 'onnxruntime-node': '1.30.0' }`), recorded with results. */
  provenance?: Record<string, string>;
  /** The typed form: the stages this plugin provides. */
  stages?: { [K in StageKind]?: StageDefinition<K> };
  /** The advanced form: bindings for the core's container. */
  register?(options: Options): ContainerModule;
  /** Options schema of the advanced form. */
  optionsSchema?: JsonSchema;
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
  /**
   * Decision threshold on the combined normality score: the `quantile` of the held-out normal images' scores, so
   * about that share of normal images is flagged. (`{ contamination }` is a deprecated name of the same rule.)
   */
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
  threshold: { quantile: number };
  outputDir: string;
  plugins: string[];
}
