// The part of a StudentTrainer that every runtime shares: calls run one at a time, batches are checked, Adam's step
// count and the rule for a non-finite loss live here, and states use the shared checkpoint format. A runtime supplies
// only its engine: a forward and backward pass, an Adam update, and access to its weights and moments.
import type { AdamSettings, BlockSpec, StageState, StudentTrainer, Tensor } from '../types.js';
import { checkTrainingBatch, decodeTrainerState, encodeTrainerState, type TrainerArrayKind } from './trainer-contract.js';

/** One forward and backward pass of a student on a batch: its mean loss and, until `release`, its weight gradients. */
export interface StudentGradients {
  readonly loss: number;
  /** torch.optim.Adam's update of every weight with these gradients; `step` is 1-based (for the bias corrections). */
  adamUpdate(step: number, adam: AdamSettings): void | Promise<void>;
  /** The gradients, as float32 copies by weight name (a GPU engine reads them back asynchronously). */
  read(): Record<string, Float32Array> | Promise<Record<string, Float32Array>>;
  /** Frees what the pass allocated; called exactly once, after the last use. */
  release?(): void;
}

/** What a runtime implements to train a student block; `EngineStudentTrainer` makes it a `StudentTrainer`. */
export interface StudentEngine {
  /** Runs at the start of every call's turn, e.g. to make the engine's backend the current one. */
  enter?(): Promise<void>;
  /** Forward and backward on a checked batch of `images` images ([images, tokens, width] each). */
  backward(input: Tensor, target: Tensor, images: number): StudentGradients | Promise<StudentGradients>;
  /** Per image: the mean over tokens and channels of (student(input) - target)^2. */
  discrepancy(input: Tensor, target: Tensor, images: number): Float64Array | Promise<Float64Array>;
  /** A float32 copy of one weight or Adam moment (a GPU engine reads it back asynchronously). */
  read(kind: TrainerArrayKind, name: string): Float32Array | Promise<Float32Array>;
  /** Overwrites one weight or Adam moment (`data` has the array's shape). */
  write(kind: TrainerArrayKind, name: string, data: Float32Array): void;
  /** Frees the engine's sessions and tensors. */
  release(): void | Promise<void>;
}

/**
 * A `StudentTrainer` over a runtime's `StudentEngine`. Calls are serialised (an Adam update never overlaps a pass that
 * reads the weights); a non-finite loss leaves weights, moments and step count untouched, so the caller can stop on
 * it and still hold the last good student.
 */
export class EngineStudentTrainer implements StudentTrainer {
  readonly spec: BlockSpec;
  private readonly adam: AdamSettings;
  private stepCount = 0;
  private disposed = false;
  private queue: Promise<unknown> = Promise.resolve();

  /** `shapes` are the block's weight shapes in order, as `checkTrainerArguments` returns them. */
  constructor(
    spec: BlockSpec,
    adam: AdamSettings,
    private readonly shapes: ReadonlyMap<string, readonly number[]>,
    private readonly engine: StudentEngine,
  ) {
    this.spec = { ...spec };
    this.adam = { ...adam };
  }

  private checkAlive(): void {
    if (this.disposed) throw new Error('student trainer: used after dispose()');
  }

  private exclusive<T>(task: () => Promise<T>): Promise<T> {
    const run = this.queue.then(async () => {
      this.checkAlive();
      await this.engine.enter?.();
      return task();
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  step(input: Tensor, target: Tensor): Promise<number> {
    return this.exclusive(async () => {
      const pass = await this.engine.backward(input, target, checkTrainingBatch(this.spec, input, target));
      try {
        if (!Number.isFinite(pass.loss)) return pass.loss;
        // The backward pass may have awaited: the update starts its own turn on the engine.
        await this.engine.enter?.();
        await pass.adamUpdate(this.stepCount + 1, this.adam);
        this.stepCount += 1;
        return pass.loss;
      } finally {
        pass.release?.();
      }
    });
  }

  lossAndGradients(input: Tensor, target: Tensor): Promise<{ loss: number; gradients: Record<string, Tensor> }> {
    return this.exclusive(async () => {
      const pass = await this.engine.backward(input, target, checkTrainingBatch(this.spec, input, target));
      try {
        const read = await pass.read();
        const gradients: Record<string, Tensor> = {};
        for (const [name, dims] of this.shapes) gradients[name] = { dims: [...dims], data: read[name] };
        return { loss: pass.loss, gradients };
      } finally {
        pass.release?.();
      }
    });
  }

  discrepancy(input: Tensor, target: Tensor): Promise<Float64Array> {
    return this.exclusive(async () => this.engine.discrepancy(input, target, checkTrainingBatch(this.spec, input, target)));
  }

  /** Reads every array of the given kinds, all at once (one wait for a GPU engine), in this call's turn. */
  private async readAll(kinds: readonly TrainerArrayKind[]): Promise<Map<string, Float32Array>> {
    const keys = kinds.flatMap((kind) => [...this.shapes.keys()].map((name) => [kind, name] as const));
    const data = await Promise.all(keys.map(([kind, name]) => this.engine.read(kind, name)));
    return new Map(keys.map(([kind, name], i) => [`${kind}/${name}`, data[i]]));
  }

  weights(): Promise<Record<string, Tensor>> {
    return this.exclusive(async () => {
      const read = await this.readAll(['weight']);
      const out: Record<string, Tensor> = {};
      for (const [name, dims] of this.shapes) out[name] = { dims: [...dims], data: read.get(`weight/${name}`)! };
      return out;
    });
  }

  exportState(): Promise<StageState> {
    return this.exclusive(async () => {
      const step = this.stepCount;
      const read = await this.readAll(['weight', 'exp_avg', 'exp_avg_sq']);
      return encodeTrainerState(this.spec, this.adam, step, this.shapes, (kind, name) => read.get(`${kind}/${name}`)!);
    });
  }

  /** Restores weights, moments and step count; a state that fails its checks changes nothing. */
  importState(state: StageState): void {
    this.checkAlive();
    const { step, arrays } = decodeTrainerState(state, this.spec, this.shapes);
    for (const { kind, name, data } of arrays) this.engine.write(kind, name, data);
    this.stepCount = step;
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.queue;
    await this.engine.release();
  }
}
