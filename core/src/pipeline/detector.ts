import { batches, createPreprocessor, heldOutSplit } from '../data/index.js';
import { seededPermutation } from '../numeric/rng.js';
import type {
  Backbone,
  DensityScorer,
  Distiller,
  FeatureCombiner,
  ImageItem,
  JsonObject,
  Matrix,
  Preprocessor,
  ProgressReporter,
  StageState,
  Tensor,
} from '../types.js';

/** The fitted parts of a detector; `distiller` and `scorers.finetuned` are absent for the pre-trained space alone. */
export interface DetectorParts {
  backbone: Backbone;
  distiller?: Distiller;
  scorers: { pretrained: DensityScorer; finetuned?: DensityScorer };
  combiner: FeatureCombiner;
}

export interface DetectorSettings {
  batchSize: number;
  skipBadFiles: boolean;
  seed: number;
  validationFraction: number;
  threshold: { quantile: number } | { contamination: number };
}

/** One score per image and feature space; `combined` is the detector's normality score (higher = more normal). */
export interface DetectorScores {
  ids: string[];
  pretrained: Float64Array;
  finetuned?: Float64Array;
  combined: Float64Array;
  /** True where `combined` is below the threshold calibrated at fit time. */
  anomalous: boolean[];
  /** Files that could not be decoded and were skipped (only with `skipBadFiles`). */
  skipped: { id: string; reason: string }[];
}

export interface FitSummary {
  fitImages: number;
  heldOutImages: number;
  threshold: number;
  skipped: { id: string; reason: string }[];
  seconds: { distill: number; features: number; scorers: number };
}

export const SPACES = ['pretrained', 'finetuned'] as const;

/**
 * A Transformaly detector: the backbone's pre-trained features and, with a distiller, the teacher-student
 * discrepancy features, each modelled by a density scorer, combined into one normality score.
 */
export class Detector {
  private readonly preprocessor: Preprocessor;
  /** Decision threshold on the combined score; set by `fit` or restored by `importStates`. */
  threshold: number | undefined;

  constructor(
    readonly parts: DetectorParts,
    readonly settings: DetectorSettings,
    private readonly progress: ProgressReporter,
  ) {
    if (parts.distiller && !parts.scorers.finetuned) throw new Error('Detector: a distiller needs a scorer for the fine-tuned space');
    this.preprocessor = createPreprocessor(parts.backbone.info.preprocess);
  }

  get spaces(): ('pretrained' | 'finetuned')[] {
    return this.parts.distiller ? ['pretrained', 'finetuned'] : ['pretrained'];
  }

  /**
   * Fits on normal images only. A seeded held-out share of them chooses each student's best epoch and calibrates
   * the threshold; the scorers are fitted on the rest.
   */
  async fit(train: ImageItem[], options: { checkpointDir?: string; signal?: AbortSignal } = {}): Promise<FitSummary> {
    const { fit, heldOut } = heldOutSplit(train, this.settings.validationFraction, this.settings.seed);
    if (fit.length < 2) throw new Error(`Detector.fit: ${fit.length} training image(s) left after holding out ${heldOut.length}; need at least 2`);
    const skipped: FitSummary['skipped'] = [];
    const t0 = performance.now();
    const { distiller } = this.parts;
    if (distiller) {
      await distiller.fit({
        backbone: this.parts.backbone,
        trainBatches: (epoch) => this.pixelBatches(epochOrder(fit, this.settings.seed, epoch), skipped),
        validationBatches: () => this.pixelBatches(heldOut, skipped),
        checkpointDir: options.checkpointDir,
        signal: options.signal,
      });
    }
    const t1 = performance.now();
    const features = await this.features(fit, 'features of training images', skipped);
    const t2 = performance.now();
    await this.parts.scorers.pretrained.fit(features.pretrained);
    if (distiller) await this.parts.scorers.finetuned!.fit(features.finetuned!);
    const trainScores = await this.spaceScores(features);
    this.parts.combiner.fit(trainScores);
    let calibration: Float64Array;
    if (heldOut.length > 0) {
      calibration = (await this.scoreFeatures(await this.features(heldOut, 'features of held-out images', skipped))).combined;
    } else {
      this.progress.warn('no held-out images (validationFraction is 0): the threshold is calibrated on the training images themselves');
      calibration = this.parts.combiner.combine(trainScores);
    }
    this.threshold = quantile(calibration, 'quantile' in this.settings.threshold ? this.settings.threshold.quantile : this.settings.threshold.contamination);
    const t3 = performance.now();
    return {
      fitImages: features.ids.length,
      heldOutImages: heldOut.length,
      threshold: this.threshold,
      skipped: dedupe(skipped),
      seconds: { distill: (t1 - t0) / 1000, features: (t2 - t1) / 1000, scorers: (t3 - t2) / 1000 },
    };
  }

  async score(items: ImageItem[], label = 'scoring'): Promise<DetectorScores> {
    if (this.threshold === undefined) throw new Error('Detector.score: the detector is not fitted (call fit, or load a saved detector)');
    const skipped: DetectorScores['skipped'] = [];
    const features = await this.features(items, label, skipped);
    const scores = await this.scoreFeatures(features);
    const threshold = this.threshold;
    return { ids: features.ids, ...scores, anomalous: Array.from(scores.combined, (s) => s < threshold), skipped };
  }

  /** Every fitted stage's state, by the stage names used in a saved detector folder. */
  exportStates(): Record<string, StageState> {
    const states: Record<string, StageState> = {
      detector: { meta: { threshold: this.threshold ?? null, spaces: this.spaces }, arrays: {} },
      'scorer-pretrained': this.parts.scorers.pretrained.exportState(),
      combiner: this.parts.combiner.exportState(),
    };
    if (this.parts.distiller) {
      states.distiller = this.parts.distiller.exportState();
      states['scorer-finetuned'] = this.parts.scorers.finetuned!.exportState();
    }
    return states;
  }

  importStates(states: Record<string, StageState>): void {
    const need = (name: string): StageState => {
      const state = states[name];
      if (!state) throw new Error(`the saved detector has no "${name}" stage, which this configuration needs`);
      return state;
    };
    const meta = need('detector').meta as JsonObject;
    const spaces = meta.spaces as string[];
    if (JSON.stringify(spaces) !== JSON.stringify(this.spaces)) {
      throw new Error(`the saved detector uses the feature spaces [${spaces}] but this configuration has [${this.spaces}]`);
    }
    this.parts.scorers.pretrained.importState(need('scorer-pretrained'));
    this.parts.combiner.importState(need('combiner'));
    if (this.parts.distiller) {
      this.parts.distiller.importState(need('distiller'));
      this.parts.scorers.finetuned!.importState(need('scorer-finetuned'));
    }
    this.threshold = typeof meta.threshold === 'number' ? meta.threshold : undefined;
  }

  /** Releases what the detector's own stages hold (the distiller's scoring sessions); the backbone is shared. */
  async dispose(): Promise<void> {
    await this.parts.distiller?.dispose?.();
  }

  private async *pixelBatches(items: ImageItem[], skipped: { id: string; reason: string }[]): AsyncGenerator<Tensor> {
    for await (const batch of batches(items, this.settings.batchSize, this.preprocessor, {
      skipBadFiles: this.settings.skipBadFiles,
      onSkip: (s) => skipped.push(s),
    })) {
      if (batch.items.length > 0) yield batch.pixels;
    }
  }

  /** One backbone pass per batch serves both spaces: the CLS feature and the taps the distiller compares. */
  private async features(items: ImageItem[], label: string, skipped: { id: string; reason: string }[]): Promise<SpaceFeatures> {
    const task = this.progress.task(label, items.length);
    const ids: string[] = [];
    const pretrained = new RowCollector();
    const finetuned = new RowCollector();
    const { distiller, backbone } = this.parts;
    for await (const batch of batches(items, this.settings.batchSize, this.preprocessor, {
      skipBadFiles: this.settings.skipBadFiles,
      onSkip: (s) => {
        skipped.push(s);
        this.progress.warn(`skipped ${s.id}: ${s.reason}`);
      },
    })) {
      if (batch.items.length > 0) {
        const output = await backbone.forward(batch.pixels, { taps: distiller ? [...distiller.blocks] : [] });
        pretrained.push(output.features);
        if (distiller) finetuned.push(await distiller.features(output));
        for (const item of batch.items) ids.push(item.id);
      }
      task.tick(batch.items.length + (batch.skipped?.length ?? 0));
    }
    task.done();
    if (ids.length === 0) throw new Error(`${label}: no image could be used (${skipped.length} skipped)`);
    return { ids, pretrained: pretrained.matrix(), finetuned: distiller ? finetuned.matrix() : undefined };
  }

  private async spaceScores(features: SpaceFeatures): Promise<Record<string, Float64Array>> {
    const scores: Record<string, Float64Array> = { pretrained: await this.parts.scorers.pretrained.scoreSamples(features.pretrained) };
    if (features.finetuned) scores.finetuned = await this.parts.scorers.finetuned!.scoreSamples(features.finetuned);
    for (const [space, values] of Object.entries(scores)) {
      const bad = values.findIndex((v) => !Number.isFinite(v));
      if (bad >= 0) throw new Error(`the ${space} scorer returned ${values[bad]} for image ${features.ids[bad]}`);
    }
    return scores;
  }

  private async scoreFeatures(features: SpaceFeatures): Promise<Pick<DetectorScores, 'pretrained' | 'finetuned' | 'combined'>> {
    const scores = await this.spaceScores(features);
    return { pretrained: scores.pretrained, finetuned: scores.finetuned, combined: this.parts.combiner.combine(scores) };
  }
}

interface SpaceFeatures {
  ids: string[];
  pretrained: Matrix;
  finetuned?: Matrix;
}

/** Appends row blocks without knowing the final count in advance. */
class RowCollector {
  private blocks: Matrix[] = [];
  push(m: Matrix): void {
    this.blocks.push(m);
  }
  matrix(): Matrix {
    const cols = this.blocks[0]?.cols ?? 0;
    const rows = this.blocks.reduce((n, b) => n + b.rows, 0);
    const data = new Float64Array(rows * cols);
    let offset = 0;
    for (const b of this.blocks) {
      if (b.cols !== cols) throw new Error(`feature blocks disagree in width: ${b.cols} vs ${cols}`);
      data.set(b.data, offset);
      offset += b.rows * cols;
    }
    return { rows, cols, data };
  }
}

/** Linear-interpolated quantile, as numpy's default. */
export function quantile(values: Float64Array, q: number): number {
  const sorted = Float64Array.from(values).sort();
  const pos = q * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** The training order of one epoch: a seeded permutation, the same whether or not a fit was resumed. */
export function epochOrder<T>(items: T[], seed: number, epoch: number): T[] {
  return Array.from(seededPermutation(items.length, seed + 1 + epoch), (i) => items[i]);
}

function dedupe(list: { id: string; reason: string }[]): { id: string; reason: string }[] {
  const seen = new Set<string>();
  return list.filter((s) => (seen.has(s.id) ? false : (seen.add(s.id), true)));
}
