import { SilentProgress } from '../progress.js';
import type {
  ArrayEntry,
  BackboneInfo,
  BackboneOutput,
  BlockSpec,
  Distiller,
  DistillerFitContext,
  JsonObject,
  Matrix,
  OnnxExportContext,
  ProgressReporter,
  Runtime,
  StageState,
  StudentScorer,
  StudentTrainer,
  TapPrecision,
  Tensor,
  TrainableRuntime,
} from '../types.js';
import type { LossHistory } from './checkpoint.js';
import { discrepancyFeaturesGraph } from './export.js';
import { initStudentWeights, readStudentWeights, studentSeed, studentShapes } from './init.js';
import {
  describeSelection,
  fixedBlocks,
  resolveDistillerOptions,
  selectBlocks,
  type DistillerOptions,
  type ResolvedDistillerOptions,
} from './options.js';
import { streamTeacherTaps, tapOf } from './taps.js';
import { defaultCacheMemoryBytes } from './teacher-cache.js';
import { trainStudents, type TrainedStudents } from './training-loop.js';

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
interface FittedStudents extends TrainedStudents {
  blocks: number[];
  spec: BlockSpec;
}

/**
 * Transformaly's teacher-student stage. For each selected block of the frozen teacher, a student block of the same
 * shape learns to reproduce the block's output from its input (MSE over all tokens and channels, Adam); each keeps
 * the epoch with the lowest held-out loss. An image's fine-tuned feature is, per block, the mean squared difference
 * between the student's and the teacher's outputs.
 *
 * Each training batch gets one step of every student (`trainStudents`) on the teacher's taps at every selected block.
 * Where the fit context records them (`teacherTaps`, the Detector's teacher cache, option `teacherCache`), the teacher
 * runs once per image and later epochs replay its taps; otherwise (or with `teacherCache: false`) it is streamed, one
 * pass per batch and epoch (`streamTeacherTaps`).
 * The training batch is whatever the fit context yields (the Detector uses the config's `batchSize`). With a
 * `checkpointDir`, every student's trainer state, best weights and loss history are written atomically after each
 * epoch, and a fit that finds a checkpoint resumes from it; with the same data order, seed and thread count it ends
 * with the same students as an uninterrupted fit.
 */
export class TransformalyDistiller implements Distiller {
  readonly name = 'transformaly';
  readonly options: ResolvedDistillerOptions;
  private readonly runtime: TrainableRuntime;
  private fitted: FittedStudents | undefined;
  private scoring: Promise<StudentScorer> | undefined;

  /** `progress` receives the fit's messages and per-epoch progress. */
  constructor(
    options: DistillerOptions | undefined,
    runtime: Runtime,
    private readonly progress: ProgressReporter = new SilentProgress(),
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
    const info = context.backbone.info;
    const blocks = selectBlocks(this.options.blocks, info.depth, info.id);
    const spec = blockSpecOf(info);
    const { epochs, adam, seed } = this.options;
    await this.dropScoring();
    this.fitted = undefined;

    const file = this.options.initialWeights;
    let initial: Promise<Map<number, Record<string, Tensor>>> | undefined;
    const cache = this.options.teacherCache && context.teacherTaps ? this.options.teacherCache : undefined;
    const memoryBytes = cache ? (cache.memoryMiB !== undefined ? cache.memoryMiB * 2 ** 20 : defaultCacheMemoryBytes()) : 0;
    const taps = cache ? context.teacherTaps!({ blocks, spec, precision: cache.precision, memoryBytes }) : streamTeacherTaps(context, blocks, spec);
    const teacher = cache
      ? `teacher once per image (taps in ${cache.precision}, up to ${formatBytes(memoryBytes)} in memory)`
      : 'teacher every epoch';
    const trained = await trainStudents({
      blocks,
      epochs,
      startStudent: async (block) => {
        if (file) initial ??= readStudentWeights(file, blocks, spec);
        const weights = (await initial)?.get(block) ?? initStudentWeights(spec, studentSeed(seed, block));
        return this.runtime.createStudentTrainer(spec, weights, adam);
      },
      taps,
      checkpoint:
        context.checkpointDir === undefined ? undefined : { dir: context.checkpointDir, setup: this.checkpointSetup(info, blocks, spec, context.setup, cache?.precision ?? 'float32') },
      progress: this.progress,
      summary:
        `distiller: ${blocks.length} student${blocks.length > 1 ? 's' : ''} for blocks ${blocks.join(', ')} of ${info.id}` +
        ` (${info.depth} blocks, width ${info.width}), ${epochs} epochs, Adam lr ${adam.lr}, ${teacher}`,
      signal: context.signal,
    });
    this.fitted = { blocks, spec, ...trained };
  }

  /** What the students are trained with; a checkpoint is resumed only by a fit with the same setup. */
  private checkpointSetup(info: BackboneInfo, blocks: number[], spec: BlockSpec, fit: JsonObject | undefined, tapPrecision: TapPrecision): JsonObject {
    return {
      // Rounded taps train other students; float32 taps, streamed or replayed, the same ones.
      tapPrecision,
      blocks,
      spec: { ...spec },
      adam: { ...this.options.adam },
      seed: this.options.seed,
      initialWeights: this.options.initialWeights ?? null,
      backbone: { id: info.id, sha256: info.sha256, precision: info.precision ?? 'float32' },
      preprocess: { ...info.preprocess } as unknown as JsonObject,
      fit: fit ?? null,
    };
  }

  async features(output: BackboneOutput): Promise<Matrix> {
    const fitted = this.requireFitted('features');
    const scoring = await this.scoringStudents();
    const taps = fitted.blocks.map((block) => tapOf(output, block, fitted.spec));
    const features = await scoring.discrepancies(taps);
    const rows = taps[0].input.dims[0];
    if (features.rows !== rows || features.cols !== fitted.blocks.length) {
      throw new Error(`distiller: scoring gave [${features.rows}, ${features.cols}] discrepancies for ${rows} images and ${fitted.blocks.length} blocks`);
    }
    return features;
  }

  /** The students with their kept weights and their discrepancies, as nodes of an exported detector (export.ts). */
  exportOnnx(ctx: OnnxExportContext, taps: ReadonlyMap<number, { input: string; output: string }>): string {
    const fitted = this.requireFitted('exportOnnx');
    return discrepancyFeaturesGraph(ctx, fitted.spec, fitted.blocks, fitted.best, taps);
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
    if (previous) void previous.then((s) => s.dispose()).catch(() => undefined);
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

  /** The best students for scoring: one scorer for all blocks where the runtime has one, else a trainer per block. */
  private scoringStudents(): Promise<StudentScorer> {
    const fitted = this.fitted!;
    this.scoring ??= this.runtime.createStudentScorer
      ? this.runtime.createStudentScorer(fitted.spec, fitted.best)
      : (async () => {
          const trainers: StudentTrainer[] = [];
          try {
            for (const best of fitted.best) trainers.push(await this.runtime.createStudentTrainer(fitted.spec, best, this.options.adam));
          } catch (error) {
            await Promise.all(trainers.map((t) => t.dispose()));
            throw error;
          }
          return trainerScorer(trainers);
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
    if (previous) await (await previous.catch(() => undefined))?.dispose();
  }
}

/** Per-block trainers as one scorer, for runtimes without `createStudentScorer`. */
function trainerScorer(trainers: StudentTrainer[]): StudentScorer {
  return {
    async discrepancies(taps) {
      const m = trainers.length;
      const rows = taps[0].input.dims[0];
      const data = new Float64Array(rows * m);
      for (let i = 0; i < m; i++) {
        const d = await trainers[i].discrepancy(taps[i].input, taps[i].output);
        if (d.length !== rows) throw new Error(`distiller: student ${i} gave ${d.length} discrepancies for ${rows} images`);
        for (let r = 0; r < rows; r++) data[r * m + i] = d[r];
      }
      return { rows, cols: m, data };
    },
    async dispose() {
      await Promise.all(trainers.map((t) => t.dispose()));
    },
  };
}

function formatBytes(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(1)} GiB` : `${Math.round(bytes / 2 ** 20)} MiB`;
}
