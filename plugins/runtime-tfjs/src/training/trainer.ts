// The tfjs StudentTrainer: weights and Adam moments are tf variables on the runtime's backend; gradients come from
// tfjs's autodiff (variableGrads), a batch larger than the micro-batch is split and its gradients accumulated, and
// Adam is torch.optim.Adam's update written in tf ops.
import * as tf from '@tensorflow/tfjs-core';
import { checkAdamSettings, checkBlockSpec, checkInitialWeights, checkTrainingBatch, decodeTrainerState, encodeTrainerState } from '@transformaly/core';
import type { AdamSettings, BlockSpec, StageState, StudentTrainer, Tensor } from '@transformaly/core';
import type { TfjsBackendName } from '../backend.js';
import { studentBlock, type StudentBlock } from './block.js';

/** `StageState.meta.format` of a trainer checkpoint: the onnxruntime trainer's, so checkpoints move between them. */


/** Multiples of each activation shape alive at the peak of a training pass (see `trainingBytesPerImage`). */
const TRAINING_ROW_FACTORS = { width: 24, mlp: 7, attention: 5 };

/**
 * Bytes of live tensors per image of a training pass, measured on a ViT-B block (tf.profile's peak over 197
 * tokens, 768 wide, MLP 3072, 12 heads) and scaled by the terms that dominate it: [tokens, width] and
 * [tokens, mlpDim] activations and [heads, tokens, tokens] attention maps.
 */
export function trainingBytesPerImage(spec: BlockSpec): number {
  const { tokens: t, width: d, mlpDim: m, heads: h } = spec;
  return 4 * (TRAINING_ROW_FACTORS.width * t * d + TRAINING_ROW_FACTORS.mlp * t * m + TRAINING_ROW_FACTORS.attention * h * t * t);
}

/**
 * The wasm heap ends at 4 GiB (32-bit addresses) and fragments as it fills: a training pass is kept under half of
 * it, and under what the tensors already alive (teacher weights, other students and their moments) leave of 80%.
 */
export const WASM_WORKING_SET_BYTES = 2 * 1024 ** 3;
const WASM_HEAP_BYTES = 4 * 1024 ** 3;

/** Images per training pass on wasm, with `liveBytes` of tensors already in the heap. */
export function wasmMicroBatch(spec: BlockSpec, liveBytes: number): number {
  const budget = Math.min(WASM_WORKING_SET_BYTES, 0.8 * WASM_HEAP_BYTES - liveBytes);
  return Math.max(1, Math.floor(budget / trainingBytesPerImage(spec)));
}

export interface TfjsTrainerOptions {
  /** Images per forward/backward pass; default: all, or on wasm as many as `wasmMicroBatch` allows. */
  microBatch?: number;
  backend: TfjsBackendName;
  /** Makes the trainer's backend the engine's current one. */
  activate: () => Promise<void>;
  onDispose?: () => void;
}

/**
 * Creates a trainer for one student block. The initial weights are copied (timm names and torch layouts, as
 * `Backbone.blockWeights` returns them); `attn.qkv.bias` must be present exactly when `spec.qkvBias`.
 */
export async function createTfjsStudentTrainer(
  spec: BlockSpec,
  initialWeights: Record<string, Tensor>,
  adam: AdamSettings,
  options: TfjsTrainerOptions,
): Promise<StudentTrainer> {
  checkBlockSpec(spec);
  checkAdamSettings(adam);
  if (options.microBatch !== undefined && (!Number.isInteger(options.microBatch) || options.microBatch < 1)) {
    throw new Error(`student trainer: microBatch must be a positive integer, got ${String(options.microBatch)}`);
  }
  const shapes = checkInitialWeights(spec, initialWeights);
  await options.activate();
  return new TfjsStudentTrainer(spec, adam, shapes, initialWeights, options);
}

class TfjsStudentTrainer implements StudentTrainer {
  private readonly params = new Map<string, tf.Variable>();
  private readonly expAvg = new Map<string, tf.Variable>();
  private readonly expAvgSq = new Map<string, tf.Variable>();
  /** Parameter name of each weight variable's (engine-wide unique) name. */
  private readonly byVariable = new Map<string, string>();
  private readonly block: StudentBlock;
  private stepCount = 0;
  private disposed = false;
  /** Calls are serialised: an Adam update must never overlap a pass that reads the weights. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly spec: BlockSpec,
    private readonly adam: AdamSettings,
    private readonly shapes: Map<string, number[]>,
    initialWeights: Record<string, Tensor>,
    private readonly options: TfjsTrainerOptions,
  ) {
    this.block = studentBlock(spec);
    for (const [name, dims] of shapes) {
      // Copies: the cpu backend would otherwise keep the caller's arrays as the variables' storage.
      const param = tf.variable(tf.tensor(initialWeights[name].data.slice(), dims, 'float32'), true);
      this.params.set(name, param);
      this.byVariable.set(param.name, name);
      this.expAvg.set(name, tf.variable(tf.zeros(dims), false));
      this.expAvgSq.set(name, tf.variable(tf.zeros(dims), false));
    }
  }

  /** Images per pass for a batch of `n`. */
  private microBatchFor(n: number): number {
    if (this.options.microBatch !== undefined) return Math.min(n, this.options.microBatch);
    if (this.options.backend !== 'wasm') return n;
    return Math.min(n, wasmMicroBatch(this.spec, tf.memory().numBytes));
  }

  private exclusive<T>(task: () => T): Promise<T> {
    const run = this.queue.then(async () => {
      if (this.disposed) throw new Error('student trainer: used after dispose()');
      await this.options.activate();
      return task();
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Rows [start, start + n) of a batch as a [n * tokens, width] tensor (no copy on the JavaScript side). */
  private rows(t: Tensor, start: number, n: number): tf.Tensor2D {
    const { tokens, width } = this.spec;
    const size = tokens * width;
    return tf.tensor2d(t.data.subarray(start * size, (start + n) * size), [n * tokens, width], 'float32');
  }

  /**
   * Loss and gradients of the whole batch, pass by pass: each pass's loss is weighted by its share of the images,
   * so the sums are the whole batch's mean loss and its gradients. Returns kept tensors the caller disposes.
   */
  private lossAndGrads(input: Tensor, target: Tensor): { loss: number; grads: Map<string, tf.Tensor> } {
    const n = checkTrainingBatch(this.spec, input, target);
    const micro = this.microBatchFor(n);
    const variables = [...this.params.values()];
    let loss = 0;
    let total: Map<string, tf.Tensor> | undefined;
    for (let start = 0; start < n; start += micro) {
      const count = Math.min(micro, n - start);
      const share = count / n;
      const { value, grads } = tf.tidy(() => {
        const x = this.rows(input, start, count);
        const t = this.rows(target, start, count);
        return tf.variableGrads(() => this.block.loss(this.params, x, t, share), variables);
      });
      loss += value.dataSync()[0];
      value.dispose();
      if (total === undefined) {
        total = new Map(Object.entries(grads).map(([variable, g]) => [this.byVariable.get(variable)!, g]));
      } else {
        for (const [variable, g] of Object.entries(grads)) {
          const name = this.byVariable.get(variable)!;
          const previous = total.get(name)!;
          total.set(name, tf.add(previous, g));
          previous.dispose();
          g.dispose();
        }
      }
    }
    return { loss, grads: total! };
  }

  /** torch.optim.Adam (no weight decay, no amsgrad): bias corrections from the step count, eps outside the root. */
  private adamUpdate(grads: Map<string, tf.Tensor>): void {
    this.stepCount += 1;
    const { lr, beta1, beta2, eps } = this.adam;
    const stepSize = lr / (1 - beta1 ** this.stepCount);
    const biasCorrection2Sqrt = Math.sqrt(1 - beta2 ** this.stepCount);
    tf.tidy(() => {
      for (const [name, param] of this.params) {
        const g = grads.get(name)!;
        const m = tf.add(tf.mul(this.expAvg.get(name)!, beta1), tf.mul(g, 1 - beta1));
        const v = tf.add(tf.mul(this.expAvgSq.get(name)!, beta2), tf.mul(tf.square(g), 1 - beta2));
        this.expAvg.get(name)!.assign(m);
        this.expAvgSq.get(name)!.assign(v);
        const denom = tf.add(tf.div(tf.sqrt(v), biasCorrection2Sqrt), eps);
        param.assign(tf.sub(param, tf.div(tf.mul(m, stepSize), denom)));
      }
    });
  }

  step(input: Tensor, target: Tensor): Promise<number> {
    return this.exclusive(() => {
      const { loss, grads } = this.lossAndGrads(input, target);
      try {
        // A non-finite loss (NaN input, divergence) leaves weights, moments and step count untouched, so the caller
        // can stop on it and still hold the last good student.
        if (Number.isFinite(loss)) this.adamUpdate(grads);
      } finally {
        for (const g of grads.values()) g.dispose();
      }
      return loss;
    });
  }

  lossAndGradients(input: Tensor, target: Tensor): Promise<{ loss: number; gradients: Record<string, Tensor> }> {
    return this.exclusive(() => {
      const { loss, grads } = this.lossAndGrads(input, target);
      const gradients: Record<string, Tensor> = {};
      for (const [name, g] of grads) {
        gradients[name] = { dims: [...this.shapes.get(name)!], data: Float32Array.from(g.dataSync() as Float32Array) };
        g.dispose();
      }
      return { loss, gradients };
    });
  }

  discrepancy(input: Tensor, target: Tensor): Promise<Float64Array> {
    return this.exclusive(() => {
      const n = checkTrainingBatch(this.spec, input, target);
      const out = new Float64Array(n);
      // A forward pass holds far less than a training pass; twice the training micro-batch stays within budget.
      const micro = Math.min(n, 2 * this.microBatchFor(n));
      for (let start = 0; start < n; start += micro) {
        const count = Math.min(micro, n - start);
        const perImage = tf.tidy(() => {
          const y = this.block.output(this.params, this.rows(input, start, count));
          const perToken = tf.mean(tf.squaredDifference(y, this.rows(target, start, count)), -1);
          return tf.mean(tf.reshape(perToken, [count, this.spec.tokens]), 1);
        });
        out.set(perImage.dataSync() as Float32Array, start);
        perImage.dispose();
      }
      return out;
    });
  }

  private read(variable: tf.Variable): Float32Array {
    // A copy: on the cpu backend dataSync returns the tensor's own storage.
    return Float32Array.from(variable.dataSync() as Float32Array);
  }

  weights(): Record<string, Tensor> {
    if (this.disposed) throw new Error('student trainer: used after dispose()');
    const out: Record<string, Tensor> = {};
    for (const [name, param] of this.params) out[name] = { dims: [...this.shapes.get(name)!], data: this.read(param) };
    return out;
  }

  exportState(): StageState {
    if (this.disposed) throw new Error('student trainer: used after dispose()');
    const source = { weight: this.params, exp_avg: this.expAvg, exp_avg_sq: this.expAvgSq };
    return encodeTrainerState(this.spec, this.adam, this.stepCount, this.shapes, (kind, name) => this.read(source[kind].get(name)!));
  }

  importState(state: StageState): void {
    if (this.disposed) throw new Error('student trainer: used after dispose()');
    const { step, arrays } = decodeTrainerState(state, this.spec, this.shapes);
    const target = { weight: this.params, exp_avg: this.expAvg, exp_avg_sq: this.expAvgSq };
    // Variables keep their backend; tfjs moves the new values there on first use.
    tf.tidy(() => {
      for (const { kind, name, data } of arrays) target[kind].get(name)!.assign(tf.tensor(Float32Array.from(data), [...this.shapes.get(name)!], 'float32'));
    });
    this.stepCount = step;
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.queue;
    for (const map of [this.params, this.expAvg, this.expAvgSq]) for (const v of map.values()) v.dispose();
    this.options.onDispose?.();
  }
}
