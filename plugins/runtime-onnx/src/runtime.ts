import * as ort from 'onnxruntime-node';
import { checkSessionFeeds, checkSessionOutputs } from '@transformaly/core';
import type {
  AdamSettings,
  BlockSpec,
  Device,
  InferenceSession,
  NumericSession,
  NumericTensor,
  OnnxModel,
  ProgressReporter,
  SessionOptions,
  StudentScorer,
  StudentTrainer,
  Tensor,
  TrainableRuntime,
} from '@transformaly/core';
import { missingCudaProvider, probeCuda } from './cuda.js';
import { createOrtSession, resolveSessionSettings, type GraphOptimizationLevel, type OrtSessionSettings } from './sessions.js';
import { createOnnxStudentScorer, createOnnxStudentTrainer } from './training/index.js';

export interface OnnxRuntimeOptions {
  /** Intra-op threads (the ones that parallelise one MatMul); default `os.availableParallelism()`. */
  threads?: number;
  /** Inter-op threads; setting more than one runs independent graph branches in parallel. */
  interOpThreads?: number;
  /** Default `cpu`. */
  device?: Device;
  /** With `device: 'cuda'` and no usable CUDA provider, run on the CPU (with a warning) instead of failing. */
  allowCpuFallback?: boolean;
  /** Default `all`. */
  graphOptimizationLevel?: GraphOptimizationLevel;
  /** onnxruntime's CPU memory arena (default on; see `OrtSessionSettings.memoryArena`). */
  memoryArena?: boolean;
  /** Whether idle intra-op threads spin waiting for work (default on, as onnxruntime's). */
  spinning?: boolean;
  progress?: ProgressReporter;
}

function warnTo(progress: ProgressReporter | undefined, message: string): void {
  if (progress) progress.warn(message);
  else process.stderr.write(`warning: ${message}\n`);
}

/**
 * onnxruntime-node as a Transformaly `Runtime`: CPU always, CUDA when its provider is installed. Every session it
 * creates (inference and the students' training) uses the same settings (`sessionSettings()`).
 */
export class OnnxRuntime implements TrainableRuntime {
  readonly name = 'onnx';
  readonly canTrain = true;
  private readonly settings: Omit<OrtSessionSettings, 'executionProviders'>;
  private currentDevice: Device;
  private readonly allowCpuFallback: boolean;
  private readonly progress: ProgressReporter | undefined;
  private readonly sessions = new Set<{ dispose(): Promise<void> }>();
  private deviceReady: Promise<void> | undefined;

  constructor(options: OnnxRuntimeOptions = {}) {
    const { executionProviders: _cpu, ...settings } = resolveSessionSettings({
      threads: options.threads,
      interOpThreads: options.interOpThreads,
      graphOptimizationLevel: options.graphOptimizationLevel,
      memoryArena: options.memoryArena,
      spinning: options.spinning,
    });
    this.settings = settings;
    const device = options.device ?? 'cpu';
    if (device !== 'cpu' && device !== 'cuda') {
      throw new Error(`runtime-onnx: option device must be 'cpu' or 'cuda', got ${JSON.stringify(device)}`);
    }
    this.currentDevice = device;
    this.allowCpuFallback = options.allowCpuFallback ?? false;
    this.progress = options.progress;
    if (device === 'cuda') {
      // The missing-library case is known without starting anything: fail (or fall back) at construction, so a
      // misconfigured run stops before any data is read.
      const missing = missingCudaProvider();
      if (missing !== undefined) this.cudaUnavailable(missing);
    }
  }

  get threads(): number {
    return this.settings.threads;
  }

  get interOpThreads(): number {
    return this.settings.interOpThreads;
  }

  get graphOptimizationLevel(): GraphOptimizationLevel {
    return this.settings.graphOptimizationLevel;
  }

  /** The device sessions run on: `cpu` after a permitted fallback from CUDA. */
  get device(): Device {
    return this.currentDevice;
  }

  private cudaUnavailable(reason: string): void {
    if (!this.allowCpuFallback) throw new Error(reason);
    this.currentDevice = 'cpu';
    warnTo(this.progress, `CUDA requested but unavailable; running on the CPU (allowCpuFallback). ${reason}`);
  }

  /** Resolves once the device is known to work; the library can be present while the driver or CUDA libraries are not. */
  private ensureDevice(): Promise<void> {
    this.deviceReady ??= (async () => {
      if (this.currentDevice !== 'cuda') return;
      const problem = await probeCuda();
      if (problem !== undefined) this.cudaUnavailable(problem);
    })();
    return this.deviceReady;
  }

  /**
   * The settings of this runtime's sessions, once its device is known to work. Other engine work on this runtime
   * (`createOrtSession(model, { ...settings, spinning: false })`) starts from them.
   */
  async sessionSettings(): Promise<OrtSessionSettings> {
    await this.ensureDevice();
    return { ...this.settings, executionProviders: this.currentDevice === 'cuda' ? ['cuda', 'cpu'] : ['cpu'] };
  }

  /** A student block trained with explicit forward and backward graphs, in sessions with this runtime's settings. */
  async createStudentTrainer(spec: BlockSpec, initialWeights: Record<string, Tensor>, adam: AdamSettings): Promise<StudentTrainer> {
    return createOnnxStudentTrainer(await this.sessionSettings(), spec, initialWeights, adam);
  }

  /** Trained students scoring together: one session, their weights constants of its graph. */
  async createStudentScorer(spec: BlockSpec, students: readonly Record<string, Tensor>[]): Promise<StudentScorer> {
    return createOnnxStudentScorer(await this.sessionSettings(), spec, students);
  }

  async createSession(model: OnnxModel, options: SessionOptions = {}): Promise<InferenceSession> {
    const settings = await this.sessionSettings();
    let session: ort.InferenceSession;
    try {
      session = await createOrtSession(model, settings);
    } catch (error) {
      throw new Error(`runtime-onnx: could not load the ONNX model: ${(error as Error).message}`, { cause: error });
    }
    const wrapped = new OnnxSession(session, options.outputs, () => this.sessions.delete(wrapped));
    this.sessions.add(wrapped);
    return wrapped;
  }

  /**
   * A session for one of the core's numeric graphs (the scorers' float64 products): this runtime's settings (its
   * threads), on the CPU, whose float64 kernels these small graphs need, one inter-op thread, and no spinning:
   * between engine calls the JavaScript side works (E-step bookkeeping, selections), and spinning pool threads would
   * only take the cores it needs.
   */
  async createNumericSession(graph: Uint8Array): Promise<NumericSession> {
    const settings = await this.sessionSettings();
    const session = await createOrtSession(graph, { ...settings, interOpThreads: 1, executionProviders: ['cpu'], spinning: false });
    const wrapped = new OnnxNumericSession(session, () => this.sessions.delete(wrapped));
    this.sessions.add(wrapped);
    return wrapped;
  }

  async dispose(): Promise<void> {
    await Promise.all([...this.sessions].map((session) => session.dispose()));
  }
}

/** An onnxruntime session the runtime holds until `dispose`, which releases it once; later runs are refused. */
abstract class HeldSession {
  private session: ort.InferenceSession | undefined;

  constructor(
    session: ort.InferenceSession,
    private readonly onDispose: () => void,
  ) {
    this.session = session;
  }

  protected live(what: string): ort.InferenceSession {
    if (!this.session) throw new Error(`runtime-onnx: run() on a disposed ${what}`);
    return this.session;
  }

  async dispose(): Promise<void> {
    const session = this.session;
    if (!session) return;
    this.session = undefined;
    this.onDispose();
    await session.release();
  }
}

class OnnxNumericSession extends HeldSession implements NumericSession {
  async run(feeds: Record<string, NumericTensor>): Promise<Record<string, NumericTensor>> {
    const session = this.live('numeric session');
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(feeds)) ortFeeds[name] = new ort.Tensor(t.type, t.data, t.dims);
    const results = await session.run(ortFeeds);
    const out: Record<string, NumericTensor> = {};
    for (const [name, value] of Object.entries(results)) {
      if (value.type !== 'float32' && value.type !== 'float64' && value.type !== 'int64') {
        throw new Error(`runtime-onnx: numeric output '${name}' is ${value.type}`);
      }
      out[name] = { type: value.type, dims: [...value.dims], data: value.data as NumericTensor['data'] };
    }
    return out;
  }
}

class OnnxSession extends HeldSession implements InferenceSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];

  constructor(
    session: ort.InferenceSession,
    private readonly defaultOutputs: string[] | undefined,
    onDispose: () => void,
  ) {
    super(session, onDispose);
    this.inputNames = [...session.inputNames];
    this.outputNames = [...session.outputNames];
    for (const meta of session.inputMetadata) {
      if (!meta.isTensor || meta.type !== 'float32') {
        const type = meta.isTensor ? meta.type : 'a non-tensor value';
        throw new Error(`runtime-onnx: model input '${meta.name}' is ${type}; only float32 tensor inputs are supported`);
      }
    }
    if (defaultOutputs) checkSessionOutputs('runtime-onnx', this.outputNames, defaultOutputs);
  }

  async run(feeds: Record<string, Tensor>, outputs?: string[]): Promise<Record<string, Tensor>> {
    const session = this.live('session');
    const wanted = outputs ?? this.defaultOutputs ?? this.outputNames;
    checkSessionOutputs('runtime-onnx', this.outputNames, wanted);
    checkSessionFeeds('runtime-onnx', this.inputNames, feeds);
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const name of this.inputNames) ortFeeds[name] = new ort.Tensor('float32', feeds[name].data, feeds[name].dims);
    const results = await session.run(ortFeeds, [...wanted]);
    const out: Record<string, Tensor> = {};
    for (const name of wanted) {
      const value = results[name];
      if (value.type !== 'float32') {
        throw new Error(`runtime-onnx: model output '${name}' is ${value.type}; only float32 outputs are supported`);
      }
      out[name] = { dims: [...value.dims], data: value.data as Float32Array };
    }
    return out;
  }
}
