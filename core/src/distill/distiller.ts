import { formatDuration } from '../progress.js';
import type {
  AdamSettings,
  ArrayEntry,
  BackboneInfo,
  BackboneOutput,
  BlockSpec,
  Distiller,
  DistillerFitContext,
  JsonObject,
  Matrix,
  ProgressReporter,
  Runtime,
  StageState,
  StudentTrainer,
  Tensor,
  TrainableRuntime,
} from '../types.js';
import { readCheckpoint, setupDifference, checkpointPath, writeCheckpoint, type LossHistory, type StudentCheckpoint } from './checkpoint.js';
import { cloneWeights, initStudentWeights, readStudentWeights, studentSeed, studentShapes } from './init.js';
import {
  describeSelection,
  fixedBlocks,
  resolveDistillerOptions,
  selectBlocks,
  type DistillerOptions,
  type ResolvedDistillerOptions,
} from './options.js';

const STATE_FORMAT = 'transformaly-distiller/1';

/** A student's shape: the teacher block's. */
export function blockSpecOf(info: BackboneInfo): BlockSpec {
  return {
    width: info.width,
    heads: info.heads,
    mlpDim: info.mlpDim,
    layerNormEps: info.layerNormEps,
    qkvBias: info.qkvBias,
    tokens: info.tokens,
  };
}

/** Narrows a runtime to one that trains students, or throws an error that names it and says what to do. */
export function asTrainableRuntime(runtime: Runtime): TrainableRuntime {
  const trainer = (runtime as Partial<TrainableRuntime>).createStudentTrainer;
  if (!runtime.canTrain || typeof trainer !== 'function') {
    const why = !runtime.canTrain ? 'cannot train (its canTrain is false)' : 'has no createStudentTrainer';
    throw new Error(
      `distiller "transformaly" trains its students on the runtime, but runtime "${runtime.name}" ${why}; ` +
        `use a trainable runtime (runtime: 'onnx'), or set distiller: false to keep only the pre-trained features`,
    );
  }
  return runtime as TrainableRuntime;
}

/** What a fit (or an imported state) leaves: the best weights of each student and how they were chosen. */
interface FittedStudents {
  blocks: number[];
  spec: BlockSpec;
  best: Record<string, Tensor>[];
  bestEpoch: number[];
  bestLoss: (number | null)[];
  history: LossHistory;
}

interface RunningStudent {
  block: number;
  trainer: StudentTrainer;
  best: Record<string, Tensor>;
  bestEpoch: number;
  bestLoss: number | null;
}

/**
 * Transformaly's teacher-student stage. For each selected block of the frozen teacher, a student block of the same
 * shape learns to reproduce the block's output from its input (MSE over all tokens and channels, Adam); each keeps
 * the epoch with the lowest held-out loss. An image's fine-tuned feature is, per block, the mean squared difference
 * between the student's and the teacher's outputs.
 *
 * Training streams the teacher: each batch gets one teacher pass with taps at every selected block, then one step of
 * every student, so hidden states are never held for the whole data set. The training batch is whatever the fit
 * context yields (the Detector uses the config's `batchSize`). With a `checkpointDir`, every student's trainer state,
 * best weights and loss history are written atomically after each epoch, and a fit that finds a checkpoint resumes
 * from it; with the same data order, seed and thread count it ends with the same students as an uninterrupted fit.
 */
export class TransformalyDistiller implements Distiller {
  readonly name = 'transformaly';
  readonly options: ResolvedDistillerOptions;
  private readonly runtime: TrainableRuntime;
  private fitted: FittedStudents | undefined;
  private scoring: Promise<StudentTrainer[]> | undefined;

  constructor(
    options: DistillerOptions | undefined,
    runtime: Runtime,
    private readonly progress: ProgressReporter,
  ) {
    this.options = resolveDistillerOptions(options);
    this.runtime = asTrainableRuntime(runtime);
  }

  /** Selected block indices, ascending. With `{ last: n }` they are known only once fitted or restored. */
  get blocks(): readonly number[] {
    if (this.fitted) return this.fitted.blocks;
    const fixed = fixedBlocks(this.options.blocks);
    if (!fixed) {
      throw new Error(
        `distiller "transformaly": blocks ${describeSelection(this.options.blocks)} depend on the backbone's depth; they are known after fit or importState`,
      );
    }
    return fixed;
  }

  /** Per-epoch training and held-out losses of the last fit (or of the restored state), one column per student. */
  get history(): LossHistory | undefined {
    return this.fitted?.history;
  }

  /** 0-based epoch whose weights each student kept. */
  get bestEpochs(): readonly number[] | undefined {
    return this.fitted?.bestEpoch;
  }

  async fit(context: DistillerFitContext): Promise<void> {
    const { backbone, signal } = context;
    // The reporter of the fit's caller; the one injected at construction when a caller gives none.
    const progress = context.progress ?? this.progress;
    const info = backbone.info;
    const blocks = selectBlocks(this.options.blocks, info.depth, info.id);
    const spec = blockSpecOf(info);
    const { epochs, adam } = this.options;
    await this.dropScoring();
    this.fitted = undefined;

    const setup: JsonObject = {
      blocks,
      spec: { ...spec },
      adam: { ...adam },
      seed: this.options.seed,
      initialWeights: this.options.initialWeights ?? null,
      backbone: { id: info.id, sha256: info.sha256 },
      preprocess: { ...info.preprocess } as unknown as JsonObject,
    };
    const dir = context.checkpointDir;
    const saved = dir ? await readCheckpoint(dir) : undefined;
    if (saved) {
      const diff = setupDifference(saved.setup, setup);
      if (diff) {
        throw new Error(
          `distiller checkpoint ${checkpointPath(dir!)} was written by a different training setup (${diff}); ` +
            'delete it to train afresh, or use another checkpoint folder',
        );
      }
      if (saved.epochsDone > epochs) {
        progress.warn(`distiller checkpoint has ${saved.epochsDone} epochs done, more than the ${epochs} configured; its students are used as they are`);
      }
    }

    const history: LossHistory = saved ? structuredClone(saved.history) : { train: [], validation: [] };
    const startEpoch = saved?.epochsDone ?? 0;
    let batchesPerEpoch = saved?.batchesPerEpoch ?? null;
    progress.info(
      `distiller: ${blocks.length} student${blocks.length > 1 ? 's' : ''} for blocks ${blocks.join(', ')} of ${info.id}` +
        ` (${info.depth} blocks, width ${info.width}), ${epochs} epochs, Adam lr ${adam.lr}` +
        (startEpoch > 0 ? `; resuming after epoch ${startEpoch} from ${checkpointPath(dir!)}` : ''),
    );

    const students = startEpoch < epochs ? await this.startStudents(blocks, spec, adam, saved?.students) : [];
    try {
      let warnedNoHeldOut = false;
      const runStart = performance.now();
      for (let epoch = startEpoch; epoch < epochs; epoch++) {
        signal?.throwIfAborted();
        const task = progress.task(`distill epoch ${epoch + 1}/${epochs}`, batchesPerEpoch ?? undefined);
        const sums = new Float64Array(students.length);
        let images = 0;
        let batch = 0;
        for await (const pixels of context.trainBatches(epoch)) {
          signal?.throwIfAborted();
          const n = pixels.dims[0];
          const output = await backbone.forward(pixels, { taps: blocks });
          let meanLoss = 0;
          for (let i = 0; i < students.length; i++) {
            const tap = tapOf(output, students[i].block, spec);
            const loss = await students[i].trainer.step(tap.input, tap.output);
            if (!Number.isFinite(loss)) throw this.nonFinite('training', loss, students[i].block, epoch, epochs, batch + 1, dir, history);
            sums[i] += loss * n;
            meanLoss += loss / students.length;
          }
          images += n;
          batch++;
          task.tick(1, `loss ${meanLoss.toExponential(3)}`);
        }
        if (images === 0) throw new Error(`distiller: epoch ${epoch + 1} yielded no training images`);
        const train = Array.from(sums, (s) => s / images);

        const validation = await this.validate(context, blocks, spec, students);
        if (validation === undefined && !warnedNoHeldOut) {
          warnedNoHeldOut = true;
          progress.warn('distiller: no held-out images, so each student keeps its last epoch instead of its best one');
        }
        for (let i = 0; i < students.length; i++) {
          const s = students[i];
          const v = validation?.[i] ?? null;
          if (v !== null && !Number.isFinite(v)) throw this.nonFinite('held-out', v, s.block, epoch, epochs, undefined, dir, history);
          if (v === null || s.bestLoss === null || v < s.bestLoss) {
            s.best = cloneWeights(s.trainer.weights());
            s.bestEpoch = epoch;
            s.bestLoss = v;
          }
        }
        history.train.push(train);
        history.validation.push(validation ?? students.map(() => null));
        batchesPerEpoch = batch;
        if (dir) {
          await writeCheckpoint(dir, {
            setup,
            epochsDone: epoch + 1,
            batchesPerEpoch,
            history,
            students: students.map((s): StudentCheckpoint => ({
              block: s.block,
              trainer: s.trainer.exportState(),
              best: s.best,
              bestEpoch: s.bestEpoch,
              bestLoss: s.bestLoss,
            })),
          });
        }
        const perEpoch = (performance.now() - runStart) / 1000 / (epoch + 1 - startEpoch);
        const meanOf = (xs: (number | null)[]) => (xs.some((x) => x === null) ? null : (xs as number[]).reduce((a, b) => a + b, 0) / xs.length);
        const heldOut = meanOf(history.validation[history.validation.length - 1]);
        const perBlock = students.map((s, i) => `${s.block}: ${(validation?.[i] ?? train[i]).toExponential(2)}`).join(', ');
        task.done(
          `train loss ${meanOf(train)!.toExponential(3)}` +
            (heldOut === null ? `  [${perBlock}]` : `  held-out ${heldOut.toExponential(3)} [${perBlock}]`) +
            (epoch + 1 < epochs ? `  distillation ETA ${formatDuration(perEpoch * (epochs - epoch - 1))}` : ''),
        );
      }
      const finalStudents = students.length > 0 ? students : saved!.students;
      this.fitted = {
        blocks,
        spec,
        best: finalStudents.map((s) => s.best),
        bestEpoch: finalStudents.map((s) => s.bestEpoch),
        bestLoss: finalStudents.map((s) => s.bestLoss),
        history,
      };
      progress.info(`distiller: best epochs ${blocks.map((b, i) => `${b}:${this.fitted!.bestEpoch[i] + 1}`).join(' ')} (block:epoch)`);
    } finally {
      await Promise.all(students.map((s) => s.trainer.dispose()));
    }
  }

  async features(output: BackboneOutput): Promise<Matrix> {
    const fitted = this.requireFitted('features');
    const trainers = await this.scoringTrainers();
    const m = fitted.blocks.length;
    let rows = -1;
    let data = new Float64Array(0);
    for (let i = 0; i < m; i++) {
      const tap = tapOf(output, fitted.blocks[i], fitted.spec);
      if (rows < 0) {
        rows = tap.input.dims[0];
        data = new Float64Array(rows * m);
      }
      const d = await trainers[i].discrepancy(tap.input, tap.output);
      if (d.length !== rows) throw new Error(`distiller: block ${fitted.blocks[i]} gave ${d.length} discrepancies for ${rows} images`);
      for (let r = 0; r < rows; r++) data[r * m + i] = d[r];
    }
    return { rows: Math.max(rows, 0), cols: m, data };
  }

  exportState(): StageState {
    const fitted = this.requireFitted('exportState');
    const arrays: Record<string, ArrayEntry> = {};
    fitted.blocks.forEach((block, i) => {
      for (const [name, t] of Object.entries(fitted.best[i])) arrays[`block${block}.${name}`] = { dims: [...t.dims], data: t.data };
    });
    return {
      meta: {
        format: STATE_FORMAT,
        blocks: fitted.blocks,
        spec: { ...fitted.spec },
        bestEpochs: fitted.bestEpoch,
        bestLosses: fitted.bestLoss,
        history: fitted.history as unknown as JsonObject,
      },
      arrays,
    };
  }

  importState(state: StageState): void {
    const meta = state.meta as any;
    const bad = (why: string) => new Error(`distiller "transformaly": cannot restore the saved state: ${why}`);
    if (meta?.format !== STATE_FORMAT) throw bad(`its format is ${JSON.stringify(meta?.format)}, expected "${STATE_FORMAT}"`);
    const blocks = meta.blocks as number[];
    const spec = meta.spec as BlockSpec;
    const expected = fixedBlocks(this.options.blocks);
    if (expected ? expected.join() !== blocks.join() : (this.options.blocks as { last: number }).last !== blocks.length) {
      throw bad(`it has students for blocks [${blocks}] but the options select ${describeSelection(this.options.blocks)}`);
    }
    const shapes = studentShapes(spec);
    const best = blocks.map((block) => {
      const weights: Record<string, Tensor> = {};
      for (const [name, dims] of Object.entries(shapes)) {
        const entry = state.arrays[`block${block}.${name}`];
        if (!entry) throw bad(`tensor "block${block}.${name}" is missing`);
        if (entry.dims.join() !== dims.join()) throw bad(`tensor "block${block}.${name}" has shape [${entry.dims}], expected [${dims}]`);
        if (!(entry.data instanceof Float32Array)) throw bad(`tensor "block${block}.${name}" is not float32`);
        weights[name] = { dims: [...dims], data: entry.data.slice() };
      }
      return weights;
    });
    const previous = this.scoring;
    this.scoring = undefined;
    if (previous) void previous.then((ts) => Promise.all(ts.map((t) => t.dispose()))).catch(() => undefined);
    this.fitted = {
      blocks: [...blocks],
      spec: { ...spec },
      best,
      bestEpoch: [...meta.bestEpochs],
      bestLoss: [...meta.bestLosses],
      history: structuredClone(meta.history ?? { train: [], validation: [] }),
    };
  }

  /** Frees the scoring students' sessions (training sessions are freed when `fit` ends). */
  async dispose(): Promise<void> {
    await this.dropScoring();
  }

  private requireFitted(what: string): FittedStudents {
    if (!this.fitted) throw new Error(`distiller "transformaly": ${what} needs a fitted distiller (call fit, or importState of a saved one)`);
    return this.fitted;
  }

  private async startStudents(blocks: number[], spec: BlockSpec, adam: AdamSettings, saved: StudentCheckpoint[] | undefined): Promise<RunningStudent[]> {
    const file = this.options.initialWeights;
    const initial = file ? await readStudentWeights(file, blocks, spec) : undefined;
    const students: RunningStudent[] = [];
    try {
      for (const block of blocks) {
        const init = initial?.get(block) ?? initStudentWeights(spec, studentSeed(this.options.seed, block));
        const trainer = await this.runtime.createStudentTrainer(spec, init, adam);
        students.push({ block, trainer, best: init, bestEpoch: -1, bestLoss: null });
        const resumed = saved?.find((s) => s.block === block);
        if (saved && !resumed) throw new Error(`distiller checkpoint has no student for block ${block}`);
        if (resumed) {
          trainer.importState(resumed.trainer);
          Object.assign(students[students.length - 1], { best: resumed.best, bestEpoch: resumed.bestEpoch, bestLoss: resumed.bestLoss });
        }
      }
    } catch (error) {
      await Promise.all(students.map((s) => s.trainer.dispose()));
      throw error;
    }
    return students;
  }

  /** Mean held-out loss of each student with its current weights; undefined when there are no held-out images. */
  private async validate(context: DistillerFitContext, blocks: number[], spec: BlockSpec, students: RunningStudent[]): Promise<number[] | undefined> {
    const sums = new Float64Array(students.length);
    let images = 0;
    for await (const pixels of context.validationBatches()) {
      context.signal?.throwIfAborted();
      const output = await context.backbone.forward(pixels, { taps: blocks });
      for (let i = 0; i < students.length; i++) {
        const tap = tapOf(output, students[i].block, spec);
        const d = await students[i].trainer.discrepancy(tap.input, tap.output);
        for (const v of d) sums[i] += v;
      }
      images += pixels.dims[0];
    }
    return images === 0 ? undefined : Array.from(sums, (s) => s / images);
  }

  private nonFinite(
    kind: 'training' | 'held-out',
    value: number,
    block: number,
    epoch: number,
    epochs: number,
    batch: number | undefined,
    dir: string | undefined,
    history: LossHistory,
  ): Error {
    const done = history.train.length;
    const kept = !dir
      ? 'no checkpoint folder was given'
      : done > 0
        ? `the checkpoint of epoch ${done} in ${checkpointPath(dir)} is kept`
        : 'no epoch had completed, so there is no checkpoint';
    return new Error(
      `distiller: non-finite ${kind} loss (${value}) for the student of block ${block} at epoch ${epoch + 1}/${epochs}` +
        `${batch !== undefined ? `, batch ${batch}` : ''}; training stopped (${kept}). ` +
        'Check the images for NaN/Inf, or lower the learning rate.',
    );
  }

  private scoringTrainers(): Promise<StudentTrainer[]> {
    const fitted = this.fitted!;
    this.scoring ??= (async () => {
      const trainers: StudentTrainer[] = [];
      try {
        for (const best of fitted.best) trainers.push(await this.runtime.createStudentTrainer(fitted.spec, best, this.options.adam));
      } catch (error) {
        await Promise.all(trainers.map((t) => t.dispose()));
        throw error;
      }
      return trainers;
    })();
    // A failed build is not cached, so the next call retries.
    this.scoring.catch(() => {
      this.scoring = undefined;
    });
    return this.scoring;
  }

  private async dropScoring(): Promise<void> {
    const previous = this.scoring;
    this.scoring = undefined;
    if (previous) {
      const trainers = await previous.catch(() => [] as StudentTrainer[]);
      await Promise.all(trainers.map((t) => t.dispose()));
    }
  }
}

function tapOf(output: BackboneOutput, block: number, spec: BlockSpec): { input: Tensor; output: Tensor } {
  const tap = output.taps.get(block);
  if (!tap) throw new Error(`distiller: the backbone output has no taps for block ${block} (forward must be called with taps: distiller.blocks)`);
  for (const [which, t] of [['input', tap.input], ['output', tap.output]] as const) {
    if (t.dims.length !== 3 || t.dims[1] !== spec.tokens || t.dims[2] !== spec.width) {
      throw new Error(`distiller: block ${block}'s tapped ${which} has shape [${t.dims}], expected [N, ${spec.tokens}, ${spec.width}]`);
    }
  }
  return tap;
}
