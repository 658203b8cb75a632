import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { batches, createPreprocessor, heldOutSplit } from '../data/index.js';
import { TeacherCache, type CachedImages, type CacheSplit } from '../distill/teacher-cache.js';
import { seededPermutation } from '../numeric/rng.js';
import { writeDetectorFolder, type LoadedDetector } from '../persistence/index.js';
import { STAGE_KINDS, STAGE_SLOTS, stateName } from '../stages.js';
import { timed } from '../profile.js';
import type {
  Backbone,
  BackboneOutput,
  DensityScorer,
  Distiller,
  FeatureCombiner,
  ImageItem,
  JsonObject,
  Matrix,
  PluginRecord,
  Preprocessor,
  ProgressReporter,
  ResolvedConfig,
  StageState,
  TeacherTapsRequest,
  Tensor,
} from '../types.js';

/** The fitted parts of a detector; `distiller` and `scorers.finetuned` are absent for the pre-trained space alone. */
export interface DetectorParts {
  backbone: Backbone;
  distiller?: Distiller;
  scorers: { pretrained: DensityScorer; finetuned?: DensityScorer };
  combiner: FeatureCombiner;
}

/** What a saved detector records about how it was made: the resolved config and the plugin of each stage. */
export interface DetectorProvenance {
  config: ResolvedConfig;
  /** By stage path (`backbone`, `scorers.pretrained`, ...) and `plugins.<i>` for the config's extra plugins. */
  plugins: Record<string, PluginRecord>;
  /** Versions of Node, the core and the plugin packages in use, with their engines (`pipeline.packageVersions()`). */
  packages: Record<string, string>;
}

/** The stages whose fitted state a detector folder holds, by their path in the config. */
const STATEFUL_STAGES = STAGE_SLOTS.filter((s) => STAGE_KINDS[s.kind].scope === 'detector').map((s) => s.path);

export interface DetectorSettings {
  batchSize: number;
  skipBadFiles: boolean;
  seed: number;
  validationFraction: number;
  threshold: { quantile: number };
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
  /** Turns decoded images into the backbone's input, as `score` does; `scorePixels` takes its output. */
  readonly preprocessor: Preprocessor;
  /** Decision threshold on the combined score; set by `fit` or restored by `importStates`. */
  threshold: number | undefined;

  constructor(
    readonly parts: DetectorParts,
    readonly settings: DetectorSettings,
    private readonly progress: ProgressReporter,
    /** Set by the pipeline that made the detector; `save` needs it. */
    readonly provenance?: DetectorProvenance,
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
    // Made when the distiller asks for the teacher's taps; it keeps the final CLS too, so the features below need
    // no teacher pass of their own.
    let cache: TeacherCache | undefined;
    try {
      if (distiller) {
        await distiller.fit({
          backbone: this.parts.backbone,
          trainBatches: (epoch) => this.pixelBatches(fit, epochOrder(range(fit.length), this.settings.seed, epoch), skipped),
          validationBatches: () => this.pixelBatches(heldOut, range(heldOut.length), skipped),
          checkpointDir: options.checkpointDir,
          signal: options.signal,
          teacherTaps: (request) => {
            void cache?.dispose();
            return (cache = this.teacherCache(request, fit, heldOut, skipped, options));
          },
          setup: {
            fitImages: fit.length,
            heldOutImages: heldOut.length,
            fitItems: digestOfIds(fit),
            heldOutItems: digestOfIds(heldOut),
            batchSize: this.settings.batchSize,
            validationFraction: this.settings.validationFraction,
            seed: this.settings.seed,
            skipBadFiles: this.settings.skipBadFiles,
          },
        });
      }
      const t1 = performance.now();
      const features = await this.features(fit, 'features of training images', skipped, recordedOf(cache, 'train'));
      const t2 = performance.now();
      await timed('scorers', async () => {
        await this.parts.scorers.pretrained.fit(features.pretrained);
        if (distiller) await this.parts.scorers.finetuned!.fit(features.finetuned!);
      });
      const trainScores = await this.spaceScores(features);
      this.parts.combiner.fit(trainScores);
      let calibration: Float64Array;
      if (heldOut.length > 0) {
        const heldOutFeatures = await this.features(heldOut, 'features of held-out images', skipped, recordedOf(cache, 'validation'));
        calibration = (await this.scoreFeatures(heldOutFeatures)).combined;
      } else {
        this.progress.warn('no held-out images (validationFraction is 0): the threshold is calibrated on the training images themselves');
        calibration = this.parts.combiner.combine(trainScores);
      }
      this.threshold = quantile(calibration, this.settings.threshold.quantile);
      const t3 = performance.now();
      return {
        fitImages: features.ids.length,
        heldOutImages: heldOut.length,
        threshold: this.threshold,
        skipped: dedupe(skipped),
        seconds: { distill: (t1 - t0) / 1000, features: (t2 - t1) / 1000, scorers: (t3 - t2) / 1000 },
      };
    } finally {
      await cache?.dispose();
    }
  }

  /** The teacher cache of one fit: the fit and held-out images, batched and ordered as `pixelBatches` does. */
  private teacherCache(
    request: TeacherTapsRequest,
    fit: ImageItem[],
    heldOut: ImageItem[],
    skipped: { id: string; reason: string }[],
    options: { checkpointDir?: string; signal?: AbortSignal },
  ): TeacherCache {
    // Each split is recorded in one pass, so its skipped files are reported once, as the features pass would.
    const images = (items: ImageItem[]): CachedImages => ({ count: items.length, batches: (order) => this.indexedBatches(items, order, skipped, true) });
    return new TeacherCache({
      ...request,
      backbone: this.parts.backbone,
      batchSize: this.settings.batchSize,
      train: images(fit),
      trainOrder: (epoch) => epochOrder(range(fit.length), this.settings.seed, epoch),
      validation: images(heldOut),
      spillDir: options.checkpointDir ?? tmpdir(),
      signal: options.signal,
    });
  }

  async score(items: ImageItem[], label = 'scoring'): Promise<DetectorScores> {
    if (this.threshold === undefined) throw new Error('Detector.score: the detector is not fitted (call fit, or load a saved detector)');
    const skipped: DetectorScores['skipped'] = [];
    const features = await this.features(items, label, skipped);
    const scores = await this.scoreFeatures(features);
    const threshold = this.threshold;
    return { ids: features.ids, ...scores, anomalous: Array.from(scores.combined, (s) => s < threshold), skipped };
  }

  /**
   * Scores images already decoded and preprocessed (NCHW, as `preprocessor` gives them) in one backbone pass, whatever
   * their number: what a service that gathers images from several requests calls. The scores equal `score`'s for the
   * same images, since every stage scores each image on its own.
   */
  async scorePixels(pixels: Tensor, ids: string[]): Promise<DetectorScores> {
    if (this.threshold === undefined) throw new Error('Detector.scorePixels: the detector is not fitted (call fit, or load a saved detector)');
    if (pixels.dims[0] !== ids.length) throw new Error(`Detector.scorePixels: ${plural(pixels.dims[0], 'image')} of pixels for ${plural(ids.length, 'id')}`);
    const features = await this.batchFeatures(pixels, ids);
    const scores = await this.scoreFeatures({ ids, ...features });
    const threshold = this.threshold;
    return { ids, ...scores, anomalous: Array.from(scores.combined, (s) => s < threshold), skipped: [] };
  }

  /**
   * Saves the fitted detector as a folder (docs/Reference/Outputs.md): its stages' states, the config and the plugins
   * by name and version, with checksums. The folder appears whole or not at all; it may replace an older detector but
   * never a folder holding anything else. `extra` is kept in the manifest (e.g. `{ caseId }`).
   */
  async save(dir: string, extra: JsonObject = {}): Promise<void> {
    if (this.threshold === undefined) throw new Error('Detector.save: the detector is not fitted');
    if (!this.provenance) {
      throw new Error('Detector.save: this detector was not made by a pipeline (pipeline.createDetector()), so it cannot record its plugins');
    }
    const info = this.parts.backbone.info;
    await writeDetectorFolder(dir, {
      config: this.provenance.config as unknown as JsonObject,
      packages: this.provenance.packages,
      plugins: this.provenance.plugins,
      stages: this.exportStates(),
      extra: { ...extra, backbone: { id: info.id, sha256: info.sha256, untrained: info.untrained } },
    });
  }

  /**
   * Restores the fitted state from a detector folder already read and verified by `readDetectorFolder`. The folder's
   * backbone must be this detector's (same sha256), and each fitted stage's plugin the one that fitted it (same name;
   * another version is only warned about, its `importState` checks what it needs).
   */
  restore(dir: string, folder: LoadedDetector): void {
    const { manifest, stages } = folder;
    const saved = (manifest.extra?.backbone ?? {}) as { sha256?: string; id?: string };
    const info = this.parts.backbone.info;
    if (saved.sha256 === undefined) throw new Error(`${dir}: the manifest records no backbone (extra.backbone.sha256), so it cannot be checked against this pipeline's`);
    if (saved.sha256 !== info.sha256) {
      throw new Error(`${dir}: fitted with backbone ${saved.id} (sha256 ${saved.sha256}) but this pipeline's backbone is ${info.id} (sha256 ${info.sha256})`);
    }
    for (const path of STATEFUL_STAGES) {
      const recorded = manifest.plugins[path];
      const mine = this.provenance?.plugins[path];
      const used = path === 'distiller' || path === 'scorers.finetuned' ? this.parts.distiller !== undefined : true;
      if (!recorded || !mine || !used) continue;
      if (recorded.name !== mine.name) {
        throw new Error(`${dir}: its ${path} was fitted by plugin "${recorded.name}", but this pipeline's ${path} is "${mine.name}"`);
      }
      if (recorded.version !== mine.version) {
        this.progress.warn(`${dir}: its ${path} was fitted by "${recorded.name}" version ${recorded.version ?? '(none)'}; this pipeline has version ${mine.version ?? '(none)'}`);
      }
    }
    try {
      this.importStates(stages);
    } catch (error) {
      throw new Error(`${dir}: ${(error as Error).message}`, { cause: error });
    }
  }

  /** Every fitted stage's state, by the stage names used in a saved detector folder. */
  exportStates(): Record<string, StageState> {
    const states: Record<string, StageState> = {
      detector: { meta: { threshold: this.threshold ?? null, spaces: this.spaces }, arrays: {} },
      [stateName('scorers.pretrained')]: this.parts.scorers.pretrained.exportState(),
      [stateName('combiner')]: this.parts.combiner.exportState(),
    };
    if (this.parts.distiller) {
      states[stateName('distiller')] = this.parts.distiller.exportState();
      states[stateName('scorers.finetuned')] = this.parts.scorers.finetuned!.exportState();
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
    this.parts.scorers.pretrained.importState(need(stateName('scorers.pretrained')));
    this.parts.combiner.importState(need(stateName('combiner')));
    if (this.parts.distiller) {
      this.parts.distiller.importState(need(stateName('distiller')));
      this.parts.scorers.finetuned!.importState(need(stateName('scorers.finetuned')));
    }
    this.threshold = typeof meta.threshold === 'number' ? meta.threshold : undefined;
  }

  /** Releases what the detector holds (the distiller's scoring sessions, the preprocessing thread); the backbone is shared. */
  async dispose(): Promise<void> {
    await this.parts.distiller?.dispose?.();
    await this.preprocessor.dispose?.();
  }

  private async *pixelBatches(items: ImageItem[], order: readonly number[], skipped: { id: string; reason: string }[]): AsyncGenerator<Tensor> {
    for await (const batch of this.indexedBatches(items, order, skipped)) yield batch.pixels;
  }

  /** Batches of `items` taken in `order` (indices into `items`), with the indices of the images each holds. */
  private async *indexedBatches(
    items: ImageItem[],
    order: readonly number[],
    skipped: { id: string; reason: string }[],
    warn = false,
  ): AsyncGenerator<{ pixels: Tensor; indices: number[] }> {
    const onSkip = (s: { id: string; reason: string }) => {
      skipped.push(s);
      if (warn) this.progress.warn(`skipped ${s.id}: ${s.reason}`);
    };
    for await (const batch of batches(order.map((i) => items[i]), this.settings.batchSize, this.preprocessor, { skipBadFiles: this.settings.skipBadFiles, onSkip })) {
      if (batch.items.length > 0) yield { pixels: batch.pixels, indices: batch.indices.map((p) => order[p]) };
    }
  }

  /**
   * One backbone pass per batch serves both spaces: the CLS feature and the taps the distiller compares. Images the
   * teacher cache recorded during the fit are read back from it instead.
   */
  private async features(
    items: ImageItem[],
    label: string,
    skipped: { id: string; reason: string }[],
    recorded?: AsyncIterable<{ indices: number[]; output: BackboneOutput }>,
  ): Promise<SpaceFeatures> {
    const task = this.progress.task(label, items.length);
    const ids: string[] = [];
    const pretrained = new RowCollector();
    const finetuned = new RowCollector();
    if (recorded) {
      for await (const { indices, output } of recorded) {
        const batchIds = indices.map((i) => items[i].id);
        const features = await this.outputFeatures(output, batchIds);
        pretrained.push(features.pretrained);
        if (features.finetuned) finetuned.push(features.finetuned);
        ids.push(...batchIds);
        task.tick(indices.length);
      }
    } else {
      for await (const batch of batches(items, this.settings.batchSize, this.preprocessor, {
        skipBadFiles: this.settings.skipBadFiles,
        onSkip: (s) => {
          skipped.push(s);
          this.progress.warn(`skipped ${s.id}: ${s.reason}`);
        },
      })) {
        if (batch.items.length > 0) {
          const batchIds = batch.items.map((item) => item.id);
          const features = await this.batchFeatures(batch.pixels, batchIds);
          pretrained.push(features.pretrained);
          if (features.finetuned) finetuned.push(features.finetuned);
          ids.push(...batchIds);
        }
        task.tick(batch.items.length + (batch.skipped?.length ?? 0));
      }
    }
    task.done();
    if (ids.length === 0) throw new Error(`${label}: no image could be used (${skipped.length} skipped)`);
    return { ids, pretrained: pretrained.matrix(), finetuned: this.parts.distiller ? finetuned.matrix() : undefined };
  }

  /** One backbone pass serves both spaces: the CLS feature and the taps the distiller compares. */
  private async batchFeatures(pixels: Tensor, ids: string[]): Promise<Omit<SpaceFeatures, 'ids'>> {
    const { distiller, backbone } = this.parts;
    return this.outputFeatures(await timed('teacher', () => backbone.forward(pixels, { taps: distiller ? [...distiller.blocks] : [] })), ids);
  }

  /** Both spaces' features from one backbone output (a pass, or the teacher cache's record of one). */
  private async outputFeatures(output: BackboneOutput, ids: string[]): Promise<Omit<SpaceFeatures, 'ids'>> {
    const { distiller, backbone } = this.parts;
    const pretrained = checkFeatures(output?.features, ids, backbone.info.width, this.stageLabel('backbone', backbone.info.id), 'forward');
    if (!distiller) return { pretrained };
    const finetuned = checkFeatures(await timed('students: score', () => distiller.features(output)), ids, distiller.blocks.length, this.stageLabel('distiller', distiller.name), 'features');
    return { pretrained, finetuned };
  }

  private async spaceScores(features: SpaceFeatures): Promise<Record<string, Float64Array>> {
    const { pretrained, finetuned } = this.parts.scorers;
    const score = async (space: 'pretrained' | 'finetuned', scorer: DensityScorer, X: Matrix) =>
      checkScores(await timed('scorers', () => scorer.scoreSamples(X)), features.ids, this.stageLabel(`scorers.${space}`, scorer.name), 'scoreSamples');
    const scores: Record<string, Float64Array> = { pretrained: await score('pretrained', pretrained, features.pretrained) };
    if (features.finetuned) scores.finetuned = await score('finetuned', finetuned!, features.finetuned);
    return scores;
  }

  private async scoreFeatures(features: SpaceFeatures): Promise<Pick<DetectorScores, 'pretrained' | 'finetuned' | 'combined'>> {
    const scores = await this.spaceScores(features);
    const { combiner } = this.parts;
    const combined = checkScores(combiner.combine(scores), features.ids, this.stageLabel('combiner', combiner.name), 'combine');
    return { pretrained: scores.pretrained, finetuned: scores.finetuned, combined };
  }

  /** How errors name a stage: its config path and its plugin, e.g. `scorers.pretrained plugin "@transformaly/scorer-knn"`. */
  private stageLabel(path: string, fallback: string): string {
    return `${path} plugin "${this.provenance?.plugins[path]?.name ?? fallback}"`;
  }
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** A stage's features must be one finite row of the declared width per image. */
function checkFeatures(m: Matrix | undefined, ids: string[], width: number, stage: string, method: string): Matrix {
  const n = ids.length;
  if (!m || typeof m !== 'object' || !(m.data instanceof Float32Array || m.data instanceof Float64Array)) {
    throw new Error(`${stage}: ${method} returned no feature matrix ({ rows, cols, data: Float32Array | Float64Array }) for ${plural(n, 'image')}`);
  }
  if (m.rows !== n || m.cols !== width || m.data.length !== n * width) {
    throw new Error(
      `${stage} returned features of shape [${m.rows}, ${m.cols}] (${m.data.length} values) for ${plural(n, 'image')}; expected [${n}, ${width}]`,
    );
  }
  const bad = m.data.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new Error(`${stage} returned the feature ${m.data[bad]} for image ${ids[Math.floor(bad / width)]} (column ${bad % width})`);
  return m;
}

/** A stage's scores must be one finite Float64Array value per image. */
function checkScores(values: unknown, ids: string[], stage: string, method: string): Float64Array {
  const n = ids.length;
  if (!(values instanceof Float64Array)) {
    const kind = values === null || values === undefined ? String(values) : ((values as object).constructor?.name ?? typeof values);
    throw new Error(`${stage}: ${method} returned ${kind}; expected a Float64Array of ${plural(n, 'score')}`);
  }
  if (values.length !== n) throw new Error(`${stage} returned ${plural(values.length, 'score')} for ${plural(n, 'image')}`);
  const bad = values.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new Error(`${stage} returned the score ${values[bad]} for image ${ids[bad]}`);
  return values;
}

/** sha256 of a list of images' ids, in order: what a checkpoint compares to know it was trained on the same images. */
function digestOfIds(items: ImageItem[]): string {
  const hash = createHash('sha256');
  for (const item of items) hash.update(item.id).update('\0');
  return hash.digest('hex');
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

/** The fit's recorded outputs of a split, when its teacher cache holds them. */
function recordedOf(cache: TeacherCache | undefined, split: CacheSplit) {
  return cache?.isRecorded(split) ? cache.outputs(split) : undefined;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** The training order of one epoch: a seeded permutation, the same whether or not a fit was resumed. */
export function epochOrder<T>(items: T[], seed: number, epoch: number): T[] {
  return Array.from(seededPermutation(items.length, seed + 1 + epoch), (i) => items[i]);
}

function dedupe(list: { id: string; reason: string }[]): { id: string; reason: string }[] {
  const seen = new Set<string>();
  return list.filter((s) => (seen.has(s.id) ? false : (seen.add(s.id), true)));
}
