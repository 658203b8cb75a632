// The onnxruntime StudentTrainer: a forward+backward session and a forward-only session over the same weights,
// which live in Float32Arrays here and are fed as inputs on every run; Adam updates them in place between runs.
import { availableParallelism } from 'node:os';
import * as ort from 'onnxruntime-node';
import {
  checkAdamSettings,
  checkBlockSpec,
  checkInitialWeights,
  checkTrainingBatch,
  decodeTrainerState,
  encodeTrainerState,
  serializeOnnxModel,
} from '@transformaly/core';
import type { AdamSettings, BlockSpec, StageState, StudentTrainer, Tensor } from '@transformaly/core';
import { adamUpdate } from './adam.js';
import {
  buildStudentForwardGraph,
  buildStudentTrainingGraph,
  STUDENT_INPUT,
  STUDENT_OPSET_IMPORTS,
  STUDENT_TARGET,
} from './student-block.js';

export interface OnnxTrainerOptions {
  /** Intra-op threads of both sessions; default `os.availableParallelism()`. */
  threads?: number;
  /**
   * onnxruntime's CPU memory arena. Default true: without it every large intermediate is allocated and zero-filled
   * afresh each step, about 15% slower (bench/training-step.mjs with and without --no-arena); with it a ViT-B block
   * trainer keeps about 1.6 GB resident instead of 0.6 GB, which matters when ten students train at once (the paper
   * preset turns it off).
   */
  memoryArena?: boolean;
  /** onnxruntime execution providers in order of preference; default `['cpu']`. */
  executionProviders?: string[];
}


/**
 * Creates a trainer for one student block. The initial weights are copied (timm names and torch layouts, as
 * `Backbone.blockWeights` returns them); `attn.qkv.bias` must be present exactly when `spec.qkvBias`.
 */
export async function createOnnxStudentTrainer(
  options: OnnxTrainerOptions,
  spec: BlockSpec,
  initialWeights: Record<string, Tensor>,
  adam: AdamSettings,
): Promise<StudentTrainer> {
  checkBlockSpec(spec);
  checkAdamSettings(adam);
  const threads = options.threads ?? availableParallelism();
  if (!Number.isInteger(threads) || threads < 1) throw new Error(`student trainer: option threads must be a positive integer, got ${String(threads)}`);
  const shapes = checkInitialWeights(spec, initialWeights);
  const weights = new Map([...shapes.keys()].map((name) => [name, Float32Array.from(initialWeights[name].data)]));

  const sessionOptions: ort.InferenceSession.SessionOptions = {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    enableCpuMemArena: options.memoryArena ?? true,
    executionProviders: options.executionProviders ?? ['cpu'],
  };
  const training = buildStudentTrainingGraph(spec);
  const created = await Promise.allSettled(
    [training.graph, buildStudentForwardGraph(spec)].map(async (graph) => {
      const model = await serializeOnnxModel(graph, { opsetImports: { ...STUDENT_OPSET_IMPORTS } });
      return ort.InferenceSession.create(model.bytes, sessionOptions);
    }),
  );
  const failed = created.find((r) => r.status === 'rejected');
  if (failed) {
    await Promise.all(created.map((r) => (r.status === 'fulfilled' ? r.value.release() : undefined)));
    const reason = (failed as PromiseRejectedResult).reason as Error;
    throw new Error(
      `student trainer: onnxruntime could not load the student graphs (execution providers ${JSON.stringify(sessionOptions.executionProviders)}): ${reason.message}`,
      { cause: reason },
    );
  }
  const [trainSession, forwardSession] = created.map((r) => (r as PromiseFulfilledResult<ort.InferenceSession>).value);
  return new OnnxStudentTrainer({ ...spec }, { ...adam }, weights, shapes, trainSession, forwardSession, training.loss, training.gradients);
}

class OnnxStudentTrainer implements StudentTrainer {
  private readonly expAvg = new Map<string, Float32Array>();
  private readonly expAvgSq = new Map<string, Float32Array>();
  private readonly grads = new Map<string, Float32Array>();
  private readonly lossBuffer = new Float32Array(1);
  private readonly fetches: Record<string, ort.Tensor> = {};
  private stepCount = 0;
  private disposed = false;
  /** Runs are serialised: an Adam update must never overlap a session reading the weights. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly spec: BlockSpec,
    private readonly adam: AdamSettings,
    private readonly params: Map<string, Float32Array>,
    private readonly shapes: Map<string, number[]>,
    private readonly trainSession: ort.InferenceSession,
    private readonly forwardSession: ort.InferenceSession,
    private readonly lossName: string,
    private readonly gradientNames: Map<string, string>,
  ) {
    for (const [name, data] of params) {
      this.expAvg.set(name, new Float32Array(data.length));
      this.expAvgSq.set(name, new Float32Array(data.length));
      this.grads.set(name, new Float32Array(data.length));
      this.fetches[gradientNames.get(name)!] = new ort.Tensor('float32', this.grads.get(name)!, shapes.get(name)!);
    }
    this.fetches[lossName] = new ort.Tensor('float32', this.lossBuffer, []);
  }

  private exclusive<T>(task: () => Promise<T>): Promise<T> {
    const run = this.queue.then(task, task);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private feeds(input: Tensor, target: Tensor): Record<string, ort.Tensor> {
    if (this.disposed) throw new Error('student trainer: used after dispose()');
    checkTrainingBatch(this.spec, input, target);
    const feeds: Record<string, ort.Tensor> = {
      [STUDENT_INPUT]: new ort.Tensor('float32', input.data, input.dims),
      [STUDENT_TARGET]: new ort.Tensor('float32', target.data, target.dims),
    };
    for (const [name, data] of this.params) feeds[name] = new ort.Tensor('float32', data, this.shapes.get(name)!);
    return feeds;
  }

  /**
   * Runs forward and backward. The gradients land in buffers this trainer owns and reuses (onnxruntime writes
   * pre-allocated outputs in place), which saves allocating and copying 28 MB per ViT-B step; they are valid until
   * the next run.
   */
  private async runTraining(input: Tensor, target: Tensor): Promise<number> {
    const feeds = this.feeds(input, target);
    await this.trainSession.run(feeds, this.fetches);
    return this.lossBuffer[0];
  }

  step(input: Tensor, target: Tensor): Promise<number> {
    return this.exclusive(async () => {
      const loss = await this.runTraining(input, target);
      // A non-finite loss (NaN input, divergence) leaves weights, moments and step count untouched, so the caller
      // can stop on it and still hold the last good student.
      if (!Number.isFinite(loss)) return loss;
      this.stepCount += 1;
      const { lr, beta1, beta2, eps } = this.adam;
      for (const [name, param] of this.params) {
        adamUpdate(param, this.grads.get(name)!, this.expAvg.get(name)!, this.expAvgSq.get(name)!, this.stepCount, lr, beta1, beta2, eps);
      }
      return loss;
    });
  }

  lossAndGradients(input: Tensor, target: Tensor): Promise<{ loss: number; gradients: Record<string, Tensor> }> {
    return this.exclusive(async () => {
      const loss = await this.runTraining(input, target);
      const gradients: Record<string, Tensor> = {};
      for (const [name, data] of this.grads) gradients[name] = { dims: [...this.shapes.get(name)!], data: Float32Array.from(data) };
      return { loss, gradients };
    });
  }

  discrepancy(input: Tensor, target: Tensor): Promise<Float64Array> {
    return this.exclusive(async () => {
      const out = await this.forwardSession.run(this.feeds(input, target), ['discrepancy']);
      return Float64Array.from(out.discrepancy.data as Float32Array);
    });
  }

  weights(): Record<string, Tensor> {
    const out: Record<string, Tensor> = {};
    for (const [name, data] of this.params) out[name] = { dims: [...this.shapes.get(name)!], data: Float32Array.from(data) };
    return out;
  }

  exportState(): StageState {
    const source = { weight: this.params, exp_avg: this.expAvg, exp_avg_sq: this.expAvgSq };
    return encodeTrainerState(this.spec, this.adam, this.stepCount, this.shapes, (kind, name) => Float32Array.from(source[kind].get(name)!));
  }

  importState(state: StageState): void {
    if (this.disposed) throw new Error('student trainer: used after dispose()');
    const { step, arrays } = decodeTrainerState(state, this.spec, this.shapes);
    const target = { weight: this.params, exp_avg: this.expAvg, exp_avg_sq: this.expAvgSq };
    for (const { kind, name, data } of arrays) target[kind].get(name)!.set(data);
    this.stepCount = step;
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.queue;
    await Promise.all([this.trainSession.release(), this.forwardSession.release()]);
  }
}
