import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { writeFileAtomic } from '@transformaly/core';
import type {
  AdamSettings,
  BlockSpec,
  Device,
  InferenceSession,
  OnnxModel,
  ProgressReporter,
  SessionOptions,
  StudentTrainer,
  Tensor,
  TrainableRuntime,
} from '@transformaly/core';
import { missingCudaProvider, probeCuda } from './cuda.js';
import { createOnnxStudentTrainer } from './training/index.js';

export type GraphOptimizationLevel = 'disabled' | 'basic' | 'extended' | 'all';

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
  /** onnxruntime's CPU memory arena (its default: on). */
  memoryArena?: boolean;
  progress?: ProgressReporter;
}

function positiveInteger(value: number | undefined, field: string): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isInteger(value) || value < 1) {
    throw new Error(`runtime-onnx: option ${field} must be a positive integer, got ${String(value)}`);
  }
  return value;
}

function warnTo(progress: ProgressReporter | undefined, message: string): void {
  if (progress) progress.warn(message);
  else process.stderr.write(`warning: ${message}\n`);
}

/** onnxruntime-node as a Transformaly `Runtime`: CPU always, CUDA when its provider is installed. */
export class OnnxRuntime implements TrainableRuntime {
  readonly name = 'onnx';
  readonly threads: number;
  readonly interOpThreads: number | undefined;
  readonly canTrain = true;
  readonly graphOptimizationLevel: GraphOptimizationLevel;
  private currentDevice: Device;
  private readonly requestedDevice: Device;
  private readonly allowCpuFallback: boolean;
  private readonly memoryArena: boolean | undefined;
  private readonly progress: ProgressReporter | undefined;
  private readonly sessions = new Set<OnnxSession>();
  private deviceReady: Promise<void> | undefined;

  constructor(options: OnnxRuntimeOptions = {}) {
    this.threads = positiveInteger(options.threads, 'threads') ?? availableParallelism();
    this.interOpThreads = positiveInteger(options.interOpThreads, 'interOpThreads');
    const device = options.device ?? 'cpu';
    if (device !== 'cpu' && device !== 'cuda') {
      throw new Error(`runtime-onnx: option device must be 'cpu' or 'cuda', got ${JSON.stringify(device)}`);
    }
    const level = options.graphOptimizationLevel ?? 'all';
    if (!['disabled', 'basic', 'extended', 'all'].includes(level)) {
      throw new Error(
        `runtime-onnx: option graphOptimizationLevel must be one of disabled, basic, extended, all; got ${JSON.stringify(level)}`,
      );
    }
    this.graphOptimizationLevel = level;
    this.requestedDevice = device;
    this.currentDevice = device;
    this.allowCpuFallback = options.allowCpuFallback ?? false;
    this.memoryArena = options.memoryArena;
    this.progress = options.progress;
    if (device === 'cuda') {
      // The missing-library case is known without starting anything: fail (or fall back) at construction, so a
      // misconfigured run stops before any data is read.
      const missing = missingCudaProvider();
      if (missing !== undefined) this.cudaUnavailable(missing);
    }
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

  private sessionOptions(): ort.InferenceSession.SessionOptions {
    const options: ort.InferenceSession.SessionOptions = {
      intraOpNumThreads: this.threads,
      graphOptimizationLevel: this.graphOptimizationLevel,
      executionProviders: this.currentDevice === 'cuda' ? ['cuda', 'cpu'] : ['cpu'],
    };
    if (this.interOpThreads !== undefined) {
      options.interOpNumThreads = this.interOpThreads;
      // Inter-op threads are only used by the parallel executor.
      if (this.interOpThreads > 1) options.executionMode = 'parallel';
    }
    if (this.memoryArena !== undefined) options.enableCpuMemArena = this.memoryArena;
    return options;
  }

  /** A student block trained with explicit forward and backward graphs on this runtime's device and threads. */
  async createStudentTrainer(spec: BlockSpec, initialWeights: Record<string, Tensor>, adam: AdamSettings): Promise<StudentTrainer> {
    await this.ensureDevice();
    return createOnnxStudentTrainer(
      {
        threads: this.threads,
        // Unset means the trainer's default (arena on, the faster); `memoryArena: false` saves about 1 GB per ViT-B student.
        memoryArena: this.memoryArena,
        executionProviders: this.currentDevice === 'cuda' ? ['cuda', 'cpu'] : ['cpu'],
      },
      spec,
      initialWeights,
      adam,
    );
  }

  async createSession(model: OnnxModel, options: SessionOptions = {}): Promise<InferenceSession> {
    await this.ensureDevice();
    const source = model.externalDataDir === undefined ? model.bytes : await graphFileFor(model.bytes, model.externalDataDir);
    let session: ort.InferenceSession;
    try {
      session =
        typeof source === 'string'
          ? await ort.InferenceSession.create(source, this.sessionOptions())
          : await ort.InferenceSession.create(source, this.sessionOptions());
    } catch (error) {
      const where = typeof source === 'string' ? ` from ${source}` : '';
      throw new Error(`runtime-onnx: could not load the ONNX model${where}: ${(error as Error).message}`, { cause: error });
    }
    const wrapped = new OnnxSession(session, options.outputs, () => this.sessions.delete(wrapped));
    this.sessions.add(wrapped);
    return wrapped;
  }

  async dispose(): Promise<void> {
    await Promise.all([...this.sessions].map((session) => session.dispose()));
  }
}

/**
 * onnxruntime resolves external-data `location`s relative to the model file, so the graph must be loaded from a file
 * in that folder. The name is content-addressed: identical graphs reuse one file, different graphs sharing the same
 * weights never overwrite each other while loading.
 */
async function graphFileFor(bytes: Uint8Array, dir: string): Promise<string> {
  const digest = createHash('sha256').update(bytes).digest('hex').slice(0, 16);
  const path = join(dir, `model.${digest}.onnx`);
  let existing: Buffer | undefined;
  try {
    existing = await readFile(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  if (existing === undefined || !Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).equals(existing)) {
    await writeFileAtomic(path, bytes);
  }
  return path;
}

function elementCount(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

class OnnxSession implements InferenceSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  private session: ort.InferenceSession | undefined;

  constructor(
    session: ort.InferenceSession,
    private readonly defaultOutputs: string[] | undefined,
    private readonly onDispose: () => void,
  ) {
    this.session = session;
    this.inputNames = [...session.inputNames];
    this.outputNames = [...session.outputNames];
    for (const meta of session.inputMetadata) {
      if (!meta.isTensor || meta.type !== 'float32') {
        const type = meta.isTensor ? meta.type : 'a non-tensor value';
        throw new Error(`runtime-onnx: model input '${meta.name}' is ${type}; only float32 tensor inputs are supported`);
      }
    }
    if (defaultOutputs) this.checkOutputs(defaultOutputs);
  }

  private checkOutputs(outputs: readonly string[]): void {
    for (const name of outputs) {
      if (!this.outputNames.includes(name)) {
        throw new Error(`runtime-onnx: the model has no output '${name}' (outputs: ${this.outputNames.join(', ')})`);
      }
    }
  }

  async run(feeds: Record<string, Tensor>, outputs?: string[]): Promise<Record<string, Tensor>> {
    const session = this.session;
    if (!session) throw new Error('runtime-onnx: run() on a disposed session');
    const wanted = outputs ?? this.defaultOutputs ?? this.outputNames;
    this.checkOutputs(wanted);
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const name of this.inputNames) {
      const tensor = feeds[name];
      if (tensor === undefined) throw new Error(`runtime-onnx: missing feed for model input '${name}'`);
      if (!(tensor.data instanceof Float32Array)) {
        throw new Error(`runtime-onnx: feed '${name}' must hold a Float32Array`);
      }
      if (tensor.data.length !== elementCount(tensor.dims)) {
        throw new Error(
          `runtime-onnx: feed '${name}' has ${tensor.data.length} values but dims [${tensor.dims.join(', ')}] need ${elementCount(tensor.dims)}`,
        );
      }
      ortFeeds[name] = new ort.Tensor('float32', tensor.data, tensor.dims);
    }
    for (const name of Object.keys(feeds)) {
      if (!this.inputNames.includes(name)) {
        throw new Error(`runtime-onnx: the model has no input '${name}' (inputs: ${this.inputNames.join(', ')})`);
      }
    }
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

  async dispose(): Promise<void> {
    const session = this.session;
    if (!session) return;
    this.session = undefined;
    this.onDispose();
    await session.release();
  }
}
