// The students' training loop, apart from any stage: epochs over a tap source, a checkpoint after every epoch and
// resume from it, the best epoch of each student by held-out loss, and progress.
import { timed } from '../profile.js';
import { formatDuration } from '../progress.js';
import type { JsonObject, ProgressReporter, StudentTrainer, Tensor } from '../types.js';
import { checkpointPath, readCheckpoint, setupDifference, writeCheckpoint, type Checkpoint, type LossHistory, type StudentCheckpoint } from './checkpoint.js';
import { cloneWeights } from './init.js';
import type { BlockTap, TapBatch, TapSource } from './taps.js';

export interface TrainingLoopSettings {
  /** The students' blocks; every per-student result is in this order. */
  blocks: readonly number[];
  epochs: number;
  /** A trainer for the student of `block`, at its initial weights. The loop restores checkpointed ones and disposes all. */
  startStudent(block: number): Promise<StudentTrainer>;
  taps: TapSource;
  /**
   * Where a checkpoint is written after every epoch, and the training setup it records: a checkpoint found there is
   * resumed only when its setup is this one.
   */
  checkpoint?: { dir: string; setup: JsonObject };
  progress: ProgressReporter;
  /** The line reported before training; the loop adds where it resumes from. */
  summary: string;
  signal?: AbortSignal;
}

/** Per student (in block order): the weights of its best epoch, that epoch and its held-out loss; and every epoch's losses. */
export interface TrainedStudents {
  best: Record<string, Tensor>[];
  /** 0-based. */
  bestEpoch: number[];
  /** Null when there were no held-out images (the last epoch is kept). */
  bestLoss: (number | null)[];
  history: LossHistory;
}

interface RunningStudent {
  block: number;
  trainer: StudentTrainer;
  best?: Record<string, Tensor>;
  bestEpoch: number;
  bestLoss: number | null;
}

/**
 * Trains one student per block, epoch by epoch. Each epoch takes one step of every student per training batch, then
 * measures each student's mean held-out discrepancy; a student keeps the weights of the epoch with the lowest (the
 * first such epoch on ties), or of the last epoch when there are no held-out images. With a checkpoint folder, every
 * student's trainer state, best weights and the loss history are written atomically after each epoch, and a
 * checkpoint found there is resumed: with the same batches and thread count, the students end as an uninterrupted
 * run's.
 */
export async function trainStudents(settings: TrainingLoopSettings): Promise<TrainedStudents> {
  const { blocks, epochs, progress, signal } = settings;
  const saved = settings.checkpoint ? await resumableCheckpoint(settings.checkpoint, epochs, progress) : undefined;
  const history: LossHistory = saved ? structuredClone(saved.history) : { train: [], validation: [] };
  const startEpoch = saved?.epochsDone ?? 0;
  progress.info(settings.summary + (startEpoch > 0 ? `; resuming after epoch ${startEpoch} from ${checkpointPath(settings.checkpoint!.dir)}` : ''));
  const resumed = blocks.map((block) => {
    const student = saved?.students.find((s) => s.block === block);
    if (saved && !student) throw new Error(`distiller checkpoint has no student for block ${block}`);
    return student;
  });

  const result = (students: { best?: Record<string, Tensor>; bestEpoch: number; bestLoss: number | null }[]): TrainedStudents => {
    progress.info(`distiller: best epochs ${blocks.map((b, i) => `${b}:${students[i].bestEpoch + 1}`).join(' ')} (block:epoch)`);
    return { best: students.map((s) => s.best!), bestEpoch: students.map((s) => s.bestEpoch), bestLoss: students.map((s) => s.bestLoss), history };
  };
  if (startEpoch >= epochs) return result(resumed as StudentCheckpoint[]);

  const students = await startStudents(settings, resumed);
  try {
    const loop = new EpochLoop(settings, students, history, saved?.batchesPerEpoch ?? null);
    for (let epoch = startEpoch; epoch < epochs; epoch++) {
      signal?.throwIfAborted();
      await loop.run(epoch);
    }
    return result(students);
  } finally {
    await Promise.all(students.map((s) => s.trainer.dispose()));
  }
}

/** The checkpoint in the folder when there is one, after checking that it was written by this training setup. */
async function resumableCheckpoint(checkpoint: { dir: string; setup: JsonObject }, epochs: number, progress: ProgressReporter): Promise<Checkpoint | undefined> {
  const saved = await readCheckpoint(checkpoint.dir);
  if (!saved) return undefined;
  const diff = setupDifference(saved.setup, checkpoint.setup);
  if (diff) {
    throw new Error(
      `distiller checkpoint ${checkpointPath(checkpoint.dir)} was written by a different training setup (${diff}); ` +
        'delete it to train afresh, or use another checkpoint folder',
    );
  }
  if (saved.epochsDone > epochs) {
    progress.warn(`distiller checkpoint has ${saved.epochsDone} epochs done, more than the ${epochs} configured; its students are used as they are`);
  }
  return saved;
}

async function startStudents(settings: TrainingLoopSettings, resumed: (StudentCheckpoint | undefined)[]): Promise<RunningStudent[]> {
  const students: RunningStudent[] = [];
  try {
    for (const [i, block] of settings.blocks.entries()) {
      const trainer = await settings.startStudent(block);
      students.push({ block, trainer, bestEpoch: -1, bestLoss: null });
      const saved = resumed[i];
      if (saved) {
        trainer.importState(saved.trainer);
        Object.assign(students[i], { best: saved.best, bestEpoch: saved.bestEpoch, bestLoss: saved.bestLoss });
      }
    }
  } catch (error) {
    await Promise.all(students.map((s) => s.trainer.dispose()));
    throw error;
  }
  return students;
}

class EpochLoop {
  private warnedNoHeldOut = false;
  private readonly started = performance.now();
  private epochsRun = 0;

  constructor(
    private readonly settings: TrainingLoopSettings,
    private readonly students: RunningStudent[],
    private readonly history: LossHistory,
    /** Batches of the last epoch (the progress total of the next); null before one has run. */
    private batchesPerEpoch: number | null,
  ) {}

  /** One epoch: training steps, held-out losses, best weights, checkpoint, progress. */
  async run(epoch: number): Promise<void> {
    const { epochs, progress } = this.settings;
    const students = this.students;
    const task = progress.task(`distill epoch ${epoch + 1}/${epochs}`, this.batchesPerEpoch ?? undefined);
    const { train, batches } = await this.trainEpoch(epoch, (meanLoss) => task.tick(1, `loss ${meanLoss.toExponential(3)}`));

    const validation = await this.validate();
    if (validation === undefined && !this.warnedNoHeldOut) {
      this.warnedNoHeldOut = true;
      progress.warn('distiller: no held-out images, so each student keeps its last epoch instead of its best one');
    }
    for (const [i, s] of students.entries()) {
      const v = validation?.[i] ?? null;
      if (v !== null && !Number.isFinite(v)) throw this.nonFinite('held-out', v, s.block, epoch);
      if (v === null || s.bestLoss === null || v < s.bestLoss) {
        s.best = cloneWeights(await s.trainer.weights());
        s.bestEpoch = epoch;
        s.bestLoss = v;
      }
    }
    this.history.train.push(train);
    this.history.validation.push(validation ?? students.map(() => null));
    this.batchesPerEpoch = batches;
    await this.writeCheckpoint(epoch);

    this.epochsRun++;
    const secondsPerEpoch = (performance.now() - this.started) / 1000 / this.epochsRun;
    const meanOf = (xs: (number | null)[]) => (xs.some((x) => x === null) ? null : (xs as number[]).reduce((a, b) => a + b, 0) / xs.length);
    const heldOut = meanOf(validation ?? students.map(() => null));
    const perBlock = students.map((s, i) => `${s.block}: ${(validation?.[i] ?? train[i]).toExponential(2)}`).join(', ');
    task.done(
      `train loss ${meanOf(train)!.toExponential(3)}` +
        (heldOut === null ? `  [${perBlock}]` : `  held-out ${heldOut.toExponential(3)} [${perBlock}]`) +
        (epoch + 1 < epochs ? `  distillation ETA ${formatDuration(secondsPerEpoch * (epochs - epoch - 1))}` : ''),
    );
  }

  /** One step of every student per training batch; each student's mean loss over the epoch's images. */
  private async trainEpoch(epoch: number, tick: (meanLoss: number) => void): Promise<{ train: number[]; batches: number }> {
    const { signal } = this.settings;
    const students = this.students;
    const sums = new Float64Array(students.length);
    let images = 0;
    let batches = 0;
    for await (const batch of this.settings.taps.train(epoch)) {
      signal?.throwIfAborted();
      let meanLoss = 0;
      for (const [i, s] of students.entries()) {
        const tap = tapFor(batch.taps, s.block);
        const loss = await timed('students: train', () => s.trainer.step(tap.input, tap.output));
        if (!Number.isFinite(loss)) throw this.nonFinite('training', loss, s.block, epoch, batches + 1);
        sums[i] += loss * batch.images;
        meanLoss += loss / students.length;
      }
      images += batch.images;
      batches++;
      tick(meanLoss);
    }
    if (images === 0) throw new Error(`distiller: epoch ${epoch + 1} yielded no training images`);
    return { train: Array.from(sums, (s) => s / images), batches };
  }

  /** Mean held-out loss of each student with its current weights; undefined when there are no held-out images. */
  private async validate(): Promise<number[] | undefined> {
    const { signal } = this.settings;
    const sums = new Float64Array(this.students.length);
    let images = 0;
    for await (const batch of this.settings.taps.validation()) {
      signal?.throwIfAborted();
      for (const [i, s] of this.students.entries()) {
        const tap = tapFor(batch.taps, s.block);
        for (const v of await timed('students: held-out', () => s.trainer.discrepancy(tap.input, tap.output))) sums[i] += v;
      }
      images += batch.images;
    }
    return images === 0 ? undefined : Array.from(sums, (s) => s / images);
  }

  private async writeCheckpoint(epoch: number): Promise<void> {
    const checkpoint = this.settings.checkpoint;
    if (!checkpoint) return;
    await writeCheckpoint(checkpoint.dir, {
      setup: checkpoint.setup,
      epochsDone: epoch + 1,
      batchesPerEpoch: this.batchesPerEpoch,
      history: this.history,
      students: await Promise.all(
        this.students.map(
          async (s): Promise<StudentCheckpoint> => ({
            block: s.block,
            trainer: await s.trainer.exportState(),
            best: s.best!,
            bestEpoch: s.bestEpoch,
            bestLoss: s.bestLoss,
          }),
        ),
      ),
    });
  }

  private nonFinite(kind: 'training' | 'held-out', value: number, block: number, epoch: number, batch?: number): Error {
    const dir = this.settings.checkpoint?.dir;
    const done = this.history.train.length;
    const kept = !dir
      ? 'no checkpoint folder was given'
      : done > 0
        ? `the checkpoint of epoch ${done} in ${checkpointPath(dir)} is kept`
        : 'no epoch had completed, so there is no checkpoint';
    return new Error(
      `distiller: non-finite ${kind} loss (${value}) for the student of block ${block} at epoch ${epoch + 1}/${this.settings.epochs}` +
        `${batch !== undefined ? `, batch ${batch}` : ''}; training stopped (${kept}). ` +
        'Check the images for NaN/Inf, or lower the learning rate.',
    );
  }
}

function tapFor(taps: TapBatch['taps'], block: number): BlockTap {
  const tap = taps.get(block);
  if (!tap) throw new Error(`distiller: a batch of taps has none for block ${block} (blocks in it: ${[...taps.keys()].join(', ')})`);
  return tap;
}
