import type {
  AdamSettings,
  BlockSpec,
  Device,
  InferenceSession,
  JsonObject,
  OnnxModel,
  ProgressReporter,
  SessionOptions,
  StudentTrainer,
  Tensor,
  TrainableRuntime,
} from '@transformaly/core';
import { activateBackend, BACKEND_NAMES, startBackend, type BackendChoice, type TfjsBackendName } from './backend.js';
import { ADAPTER_POLICIES, type AdapterPolicy } from './webgpu/device.js';
import { createTfjsSession, type TfjsSession } from './onnx/session.js';
import { createTfjsStudentTrainer } from './training/trainer.js';

export interface TfjsRuntimeOptions {
  /**
   * Default: the first that works of `tensorflow` (tfjs-node-gpu, then tfjs-node), `webgpu` on a GPU adapter,
   * `wasm`, `cpu`.
   */
  backend?: TfjsBackendName;
  /**
   * WebGPU adapters the webgpu backend accepts: `gpu` only a GPU; `any` also a CPU implementation (lavapipe,
   * SwiftShader); `auto` (default) a CPU one only when the webgpu backend is named.
   */
  adapter?: AdapterPolicy;
  /**
   * Threads of the `tensorflow` backend (libtensorflow's intra-op pool, through TF_NUM_INTRAOP_THREADS, unless the
   * environment sets it). tfjs-backend-wasm runs single-threaded under Node and the cpu backend is single-threaded.
   */
  threads?: number;
  /**
   * Images per forward/backward pass of a student; a larger batch is split and its gradients accumulated (the
   * step is the same). Default: the whole batch, or on wasm as many images as fit a 2 GiB working set.
   */
  microBatch?: number;
  progress?: ProgressReporter;
}

function positiveInteger(value: unknown, field: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new Error(`runtime-tfjs: option ${field} must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return value;
}

/**
 * TensorFlow.js as a Transformaly runtime: it runs the ONNX graphs that backbones build (through a table of tfjs
 * implementations of the ONNX operators) and trains students with tfjs's own autodiff.
 */
export class TfjsRuntime implements TrainableRuntime {
  readonly name = 'tfjs';
  readonly canTrain = true;
  readonly microBatch: number | undefined;
  private readonly requested: TfjsBackendName | undefined;
  private readonly adapterPolicy: AdapterPolicy | undefined;
  private readonly requestedThreads: number | undefined;
  private readonly progress: ProgressReporter | undefined;
  private readonly sessions = new Set<TfjsSession>();
  private readonly trainers = new Set<StudentTrainer>();
  private started: Promise<BackendChoice> | undefined;
  private chosen: BackendChoice | undefined;

  constructor(options: TfjsRuntimeOptions = {}) {
    const known = new Set(['backend', 'adapter', 'threads', 'microBatch', 'progress']);
    for (const key of Object.keys(options)) {
      if (!known.has(key)) throw new Error(`runtime-tfjs: unknown option "${key}" (options: backend, adapter, threads, microBatch)`);
    }
    if (options.backend !== undefined && !BACKEND_NAMES.includes(options.backend)) {
      throw new Error(`runtime-tfjs: option backend must be one of ${BACKEND_NAMES.join(', ')}; got ${JSON.stringify(options.backend)}`);
    }
    if (options.adapter !== undefined && !ADAPTER_POLICIES.includes(options.adapter)) {
      throw new Error(`runtime-tfjs: option adapter must be one of ${ADAPTER_POLICIES.join(', ')}; got ${JSON.stringify(options.adapter)}`);
    }
    if (options.adapter !== undefined && options.backend !== undefined && options.backend !== 'webgpu') {
      throw new Error(`runtime-tfjs: option adapter applies to the webgpu backend, but backend is '${options.backend}'`);
    }
    this.requested = options.backend;
    this.adapterPolicy = options.adapter;
    this.requestedThreads = positiveInteger(options.threads, 'threads');
    this.microBatch = positiveInteger(options.microBatch, 'microBatch');
    this.progress = options.progress;
  }

  /** The backend once started (`ready()`); undefined before. */
  get backend(): BackendChoice | undefined {
    return this.chosen;
  }

  get device(): Device {
    return this.chosen?.device ?? 'cpu';
  }

  get threads(): number {
    return this.chosen?.threads ?? (this.requested === 'tensorflow' ? (this.requestedThreads ?? 1) : 1);
  }

  /** Starts the backend (once) and reports which one and why. */
  ready(): Promise<BackendChoice> {
    this.started ??= (async () => {
      const choice = await startBackend({ backend: this.requested, threads: this.requestedThreads, adapter: this.adapterPolicy });
      this.chosen = choice;
      const message = `runtime-tfjs: backend ${choice.name} (${choice.package}): ${choice.reason}`;
      if (this.progress) {
        if (choice.name === 'cpu') this.progress.warn(message);
        else this.progress.info(message);
        if (this.requestedThreads !== undefined && this.requestedThreads !== choice.threads && choice.name !== 'tensorflow') {
          const where =
            choice.name === 'webgpu'
              ? `whose ${choice.device === 'cpu' ? 'CPU adapter runs on LP_NUM_THREADS (lavapipe) threads' : 'adapter is a GPU'}`
              : `which runs on ${choice.threads} thread(s) under Node`;
          this.progress.info(`runtime-tfjs: threads ${this.requestedThreads} does not apply to the ${choice.name} backend, ${where}`);
        }
      }
      return choice;
    })();
    return this.started;
  }

  /** Makes this runtime's backend the engine's current one (tfjs keeps one engine per process). */
  private async activate(): Promise<void> {
    const choice = await this.ready();
    await activateBackend(choice.name);
  }

  /** The backend and, on webgpu, the adapter: what a run records in results.json. */
  async describe(): Promise<JsonObject> {
    const { name, package: pkg, device, threads, simd, adapter } = await this.ready();
    return {
      backend: name,
      package: pkg,
      device,
      threads,
      ...(simd !== undefined && { simd }),
      ...(adapter && { adapter: { ...adapter, features: [...adapter.features] } }),
    };
  }

  async createSession(model: OnnxModel, options: SessionOptions = {}): Promise<InferenceSession> {
    const choice = await this.ready();
    await activateBackend(choice.name);
    // wasm reads copy out of its heap already; other backends may hand out their own storage.
    const session = await createTfjsSession(model, options.outputs, () => this.activate(), () => this.sessions.delete(session), choice.name !== 'wasm');
    this.sessions.add(session);
    return session;
  }

  async createStudentTrainer(spec: BlockSpec, initialWeights: Record<string, Tensor>, adam: AdamSettings): Promise<StudentTrainer> {
    const choice = await this.ready();
    const trainer = await createTfjsStudentTrainer(spec, initialWeights, adam, {
      microBatch: this.microBatch,
      backend: choice.name,
      maxBindingBytes: choice.adapter?.maxStorageBufferBindingSize,
      activate: () => this.activate(),
      onDispose: () => this.trainers.delete(trainer),
    });
    this.trainers.add(trainer);
    return trainer;
  }

  async dispose(): Promise<void> {
    await Promise.all([...this.sessions].map((s) => s.dispose()));
    await Promise.all([...this.trainers].map((t) => t.dispose()));
  }
}
