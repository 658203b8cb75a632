// The tfjs StudentTrainer: weights and Adam moments are tf variables on the runtime's backend; gradients come from
// tfjs's autodiff (variableGrads), a batch larger than the micro-batch is split and its gradients accumulated, and
// Adam is torch.optim.Adam's update written in tf ops.
import * as tf from '@tensorflow/tfjs-core';
import { checkTrainerArguments, EngineStudentTrainer } from '@transformaly/core';
import type { AdamSettings, BlockSpec, StudentEngine, StudentGradients, StudentTrainer, Tensor, TrainerArrayKind } from '@transformaly/core';
import type { TfjsBackendName } from '../backend.js';
import { throwOnDeviceError } from '../webgpu/device.js';
import { studentBlock, type StudentBlock } from './block.js';

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

/** Images per pass whose largest tensor (MLP activations or attention maps) fits in one storage buffer binding. */
export function bindingMicroBatch(spec: BlockSpec, maxBindingBytes: number): number {
  const { tokens: t, width: d, mlpDim: m, heads: h } = spec;
  return Math.max(1, Math.floor(maxBindingBytes / (4 * Math.max(t * m, h * t * t, t * d))));
}

export interface TfjsTrainerOptions {
  /**
   * Images per forward/backward pass; default: all, on wasm as many as `wasmMicroBatch` allows, on webgpu as many
   * as `bindingMicroBatch` allows.
   */
  microBatch?: number;
  backend: TfjsBackendName;
  /** The WebGPU adapter's maxStorageBufferBindingSize (webgpu only). */
  maxBindingBytes?: number;
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
  const shapes = checkTrainerArguments(spec, initialWeights, adam);
  if (options.microBatch !== undefined && (!Number.isInteger(options.microBatch) || options.microBatch < 1)) {
    throw new Error(`student trainer: microBatch must be a positive integer, got ${String(options.microBatch)}`);
  }
  await options.activate();
  return new EngineStudentTrainer(spec, adam, shapes, new TfjsStudentEngine(spec, shapes, initialWeights, options));
}

/**
 * The student's weights and Adam moments are tf variables on the runtime's backend. Everything stays there through a
 * call: reads are asynchronous (a GPU backend has none other) and happen once per call, for its results only.
 */
class TfjsStudentEngine implements StudentEngine {
  private readonly variables: Record<TrainerArrayKind, Map<string, tf.Variable>> = { weight: new Map(), exp_avg: new Map(), exp_avg_sq: new Map() };
  /** Parameter name of each weight variable's (engine-wide unique) name. */
  private readonly byVariable = new Map<string, string>();
  private readonly block: StudentBlock;

  constructor(
    private readonly spec: BlockSpec,
    private readonly shapes: Map<string, number[]>,
    initialWeights: Record<string, Tensor>,
    private readonly options: TfjsTrainerOptions,
  ) {
    this.block = studentBlock(spec);
    for (const [name, dims] of shapes) {
      // Copies: the cpu backend would otherwise keep the caller's arrays as the variables' storage.
      const param = tf.variable(tf.tensor(initialWeights[name].data.slice(), dims, 'float32'), true);
      this.variables.weight.set(name, param);
      this.byVariable.set(param.name, name);
      this.variables.exp_avg.set(name, tf.variable(tf.zeros(dims), false));
      this.variables.exp_avg_sq.set(name, tf.variable(tf.zeros(dims), false));
    }
  }

  enter(): Promise<void> {
    return this.options.activate();
  }

  /** Images per pass for a batch of `n`. */
  private microBatchFor(n: number): number {
    if (this.options.microBatch !== undefined) return Math.min(n, this.options.microBatch);
    if (this.options.backend === 'wasm') return Math.min(n, wasmMicroBatch(this.spec, tf.memory().numBytes));
    if (this.options.maxBindingBytes !== undefined) return Math.min(n, bindingMicroBatch(this.spec, this.options.maxBindingBytes));
    return n;
  }

  /** The values of `tensors`, read back together; throws when the WebGPU device reported an error. */
  private async download(tensors: tf.Tensor[], what: string): Promise<Float32Array[]> {
    const data = await Promise.all(tensors.map((t) => t.data() as Promise<Float32Array>));
    throwOnDeviceError(`a student trainer's ${what}`);
    return data;
  }

  /** Rows [start, start + n) of a batch as a [n * tokens, width] tensor (no copy on the JavaScript side). */
  private rows(t: Tensor, start: number, n: number): tf.Tensor2D {
    const { tokens, width } = this.spec;
    const size = tokens * width;
    return tf.tensor2d(t.data.subarray(start * size, (start + n) * size), [n * tokens, width], 'float32');
  }

  /**
   * Loss and gradients of the whole batch, pass by pass: each pass's loss is weighted by its share of the images,
   * so the sums are the whole batch's mean loss and its gradients. Only the loss is read back; the gradients stay on
   * the device for the Adam update.
   */
  async backward(input: Tensor, target: Tensor, n: number): Promise<StudentGradients> {
    const micro = this.microBatchFor(n);
    const params = this.variables.weight;
    const variables = [...params.values()];
    let loss: tf.Tensor | undefined;
    let total: Map<string, tf.Tensor> | undefined;
    for (let start = 0; start < n; start += micro) {
      const count = Math.min(micro, n - start);
      const share = count / n;
      const { value, grads } = tf.tidy(() => {
        const x = this.rows(input, start, count);
        const t = this.rows(target, start, count);
        return tf.variableGrads(() => this.block.loss(params, x, t, share), variables);
      });
      if (loss === undefined) loss = value;
      else {
        const previous = loss;
        loss = tf.add(previous, value);
        previous.dispose();
        value.dispose();
      }
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
    const grads = total!;
    const release = () => {
      for (const g of grads.values()) g.dispose();
    };
    let value: number;
    try {
      [[value]] = await this.download([loss!], 'training pass');
    } catch (error) {
      release();
      throw error;
    } finally {
      loss!.dispose();
    }
    return {
      loss: value,
      adamUpdate: (step, adam) => this.adamUpdate(grads, step, adam),
      read: async () => {
        const names = [...grads.keys()];
        const data = await this.download(names.map((name) => grads.get(name)!), 'gradients');
        // Copies: on the cpu backend a read returns the tensor's own storage.
        return Object.fromEntries(names.map((name, i) => [name, Float32Array.from(data[i])]));
      },
      release,
    };
  }

  /** torch.optim.Adam (no weight decay, no amsgrad): bias corrections from the step count, eps outside the root. */
  private adamUpdate(grads: Map<string, tf.Tensor>, step: number, { lr, beta1, beta2, eps }: AdamSettings): void {
    const stepSize = lr / (1 - beta1 ** step);
    const biasCorrection2Sqrt = Math.sqrt(1 - beta2 ** step);
    const { weight, exp_avg: expAvg, exp_avg_sq: expAvgSq } = this.variables;
    tf.tidy(() => {
      for (const [name, param] of weight) {
        const g = grads.get(name)!;
        const m = tf.add(tf.mul(expAvg.get(name)!, beta1), tf.mul(g, 1 - beta1));
        const v = tf.add(tf.mul(expAvgSq.get(name)!, beta2), tf.mul(tf.square(g), 1 - beta2));
        expAvg.get(name)!.assign(m);
        expAvgSq.get(name)!.assign(v);
        const denom = tf.add(tf.div(tf.sqrt(v), biasCorrection2Sqrt), eps);
        param.assign(tf.sub(param, tf.div(tf.mul(m, stepSize), denom)));
      }
    });
  }

  async discrepancy(input: Tensor, target: Tensor, n: number): Promise<Float64Array> {
    // A forward pass holds far less than a training pass; twice the training micro-batch stays within budget.
    const micro = Math.min(n, 2 * this.microBatchFor(n));
    const parts: tf.Tensor[] = [];
    try {
      for (let start = 0; start < n; start += micro) {
        const count = Math.min(micro, n - start);
        parts.push(
          tf.tidy(() => {
            const y = this.block.output(this.variables.weight, this.rows(input, start, count));
            const perToken = tf.mean(tf.squaredDifference(y, this.rows(target, start, count)), -1);
            return tf.mean(tf.reshape(perToken, [count, this.spec.tokens]), 1);
          }),
        );
      }
      const out = new Float64Array(n);
      let at = 0;
      for (const values of await this.download(parts, 'discrepancy')) {
        out.set(values, at);
        at += values.length;
      }
      return out;
    } finally {
      for (const p of parts) p.dispose();
    }
  }

  async read(kind: TrainerArrayKind, name: string): Promise<Float32Array> {
    const [data] = await this.download([this.variables[kind].get(name)!], 'state read-back');
    // A copy: on the cpu backend a read returns the tensor's own storage.
    return Float32Array.from(data);
  }

  write(kind: TrainerArrayKind, name: string, data: Float32Array): void {
    // Variables keep their backend; tfjs moves the new values there on first use.
    tf.tidy(() => this.variables[kind].get(name)!.assign(tf.tensor(Float32Array.from(data), [...this.shapes.get(name)!], 'float32')));
  }

  release(): void {
    for (const map of Object.values(this.variables)) for (const v of map.values()) v.dispose();
    this.options.onDispose?.();
  }
}
