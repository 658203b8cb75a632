// The onnxruntime StudentTrainer: a forward+backward session and a forward-only session over the same weights,
// which live in Float32Arrays here and are fed as inputs on every run; Adam updates them in place between runs.
import { availableParallelism } from 'node:os';
import * as ort from 'onnxruntime-node';
import { decodeTrainerState, encodeTrainerState, serializeOnnxModel } from '@transformaly/core';
import type { AdamSettings, BlockSpec, StageState, StudentTrainer, Tensor } from '@transformaly/core';
import { adamUpdate, checkAdamSettings } from './adam.js';
import {
  buildStudentForwardGraph,
  buildStudentTrainingGraph,
  checkBlockSpec,
  studentWeightShapes,
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


function sameDims(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
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
  const shapes = studentWeightShapes(spec);
  const weights = new Map<string, Float32Array>();
  for (const [name, dims] of shapes) {
    const tensor = initialWeights[name];
    if (tensor === undefined) throw new Error(`student trainer: initial weight "${name}" is missing (expected dims [${dims.join(', ')}])`);
    if (!sameDims(tensor.dims, dims)) {
      throw new Error(`student trainer: initial weight "${name}" has dims [${tensor.dims.join(', ')}], expected [${dims.join(', ')}]`);
    }
    if (!(tensor.data instanceof Float32Array) || tensor.data.length !== dims.reduce((a, b) => a * b, 1)) {
      throw new Error(`student trainer: initial weight "${name}" must hold ${dims.reduce((a, b) => a * b, 1)} float32 values`);
    }
    weights.set(name, Float32Array.from(tensor.data));
  }
  for (const name of Object.keys(initialWeights)) {
    if (!shapes.has(name)) {
      const hint = name === 'attn.qkv.bias' ? ' (spec.qkvBias is false)' : '';
      throw new Error(`student trainer: unexpected initial weight "${name}"${hint}; expected ${[...shapes.keys()].join(', ')}`);
    }
  }

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
    const { tokens, width } = this.spec;
    for (const [what, t] of [
      ['input', input],
      ['target', target],
    ] as const) {
      const n = t.dims[0];
      if (t.dims.length !== 3 || !Number.isInteger(n) || n < 1 || t.dims[1] !== tokens || t.dims[2] !== width) {
        throw new Error(`student trainer: ${what} has dims [${t.dims.join(', ')}], expected [N, ${tokens}, ${width}]`);
      }
      if (!(t.data instanceof Float32Array) || t.data.length !== n * tokens * width) {
        throw new Error(`student trainer: ${what} must hold ${n * tokens * width} float32 values`);
      }
    }
    if (input.dims[0] !== target.dims[0]) {
      throw new Error(`student trainer: input has ${input.dims[0]} images but target has ${target.dims[0]}`);
    }
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
