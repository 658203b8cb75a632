import { Container } from 'inversify';
import { loadConfigFile, configBaseDir } from '../config/load.js';
import { resolveConfig, type LoadedStage, type Resolution, type StagePath } from '../config/resolve.js';
import { makeCases } from '../data/index.js';
import { readDetectorFolder } from '../persistence/index.js';
import { BUILTIN_PLUGINS } from '../plugins/builtins.js';
import { SilentProgress } from '../progress.js';
import { TOKENS } from '../tokens.js';
import type {
  Backbone,
  DensityScorer,
  Distiller,
  FeatureCombiner,
  ImageSource,
  JsonObject,
  PluginRecord,
  ProgressReporter,
  ProtocolCase,
  ResolvedConfig,
  Runtime,
  TransformalyConfig,
  TransformalyPlugin,
} from '../types.js';
import { Detector } from './detector.js';

export interface PipelineOptions {
  /** Folder that relative paths in the config are resolved against (default: the config file's folder, or cwd). */
  baseDir?: string;
  /** Shown in error messages (default: the config file, or "config"). */
  configFile?: string;
  progress?: ProgressReporter;
  /** Extra built-in plugins by name, e.g. for a program that defines stages in code. */
  plugins?: Record<string, TransformalyPlugin>;
}

/**
 * The composition root: a validated config becomes a container, and the container becomes a pipeline. Nothing
 * outside this function sees the container.
 */
export async function createPipeline(config: TransformalyConfig, options: PipelineOptions = {}): Promise<Pipeline> {
  const baseDir = options.baseDir ?? process.cwd();
  const builtins = new Map<string, TransformalyPlugin>([...BUILTIN_PLUGINS, ...Object.entries(options.plugins ?? {})]);
  const resolution = await resolveConfig(config, { file: options.configFile ?? 'config', baseDir, builtins });
  return new Pipeline(resolution, options.progress ?? new SilentProgress());
}

/** Reads `transformaly.config.*` (or `configPath`) and builds its pipeline. */
export async function createPipelineFromFile(options: { configPath?: string; cwd?: string; progress?: ProgressReporter } = {}): Promise<Pipeline> {
  const { config, file } = await loadConfigFile(options);
  return createPipeline(config as TransformalyConfig, { baseDir: configBaseDir(file), configFile: file, progress: options.progress });
}

export class Pipeline {
  readonly config: ResolvedConfig;
  private readonly root: Container;
  private readonly stages: Map<StagePath, LoadedStage>;
  /** Per-case stages (distiller, scorers, combiner) are resolved fresh from their own child containers. */
  private readonly perCase = new Map<StagePath, Container>();
  private disposed = false;
  private resolvedRuntime: Promise<Runtime> | undefined;
  private resolvedBackbone: Promise<Backbone> | undefined;
  /** Name, version and origin of each stage's plugin (and `plugins.<i>` for the extra ones), for saved detectors. */
  readonly plugins: Readonly<Record<string, PluginRecord>>;

  constructor(
    resolution: Resolution,
    readonly progress: ProgressReporter,
  ) {
    this.config = resolution.config;
    this.stages = new Map(resolution.stages.map((s) => [s.path, s]));
    this.plugins = Object.fromEntries([
      ...resolution.stages.map((s) => [s.path, s.record] as const),
      ...resolution.extraPlugins.map((p, i) => [`plugins.${i}`, p.record] as const),
    ]);
    this.root = new Container();
    this.root.bind(TOKENS.ProgressReporter).toConstantValue(progress);
    for (const { plugin } of resolution.extraPlugins) this.root.load(plugin.register({}));
    for (const path of ['runtime', 'data', 'backbone'] as const) {
      const stage = this.stages.get(path);
      if (stage) this.root.load(stage.plugin.register(stage.ref.options ?? {}));
    }
    for (const path of ['distiller', 'scorers.pretrained', 'scorers.finetuned', 'combiner'] as const) {
      const stage = this.stages.get(path);
      if (!stage) continue;
      const child = new Container({ parent: this.root });
      child.load(stage.plugin.register(stage.ref.options ?? {}));
      this.perCase.set(path, child);
    }
  }

  source(): Promise<ImageSource> {
    return this.root.getAsync<ImageSource>(TOKENS.ImageSource);
  }

  runtime(): Promise<Runtime> {
    return (this.resolvedRuntime ??= this.root.getAsync<Runtime>(TOKENS.Runtime));
  }

  /** The backbone, loaded (and downloaded) on first use. */
  backbone(): Promise<Backbone> {
    return (this.resolvedBackbone ??= this.root.getAsync<Backbone>(TOKENS.Backbone));
  }

  /** The protocol cases of the config's data set: one per listed class. */
  async cases(): Promise<ProtocolCase[]> {
    const { mode, classes, limit } = this.config.protocol;
    return makeCases(await this.source(), { mode, classes, limit, seed: this.config.seed });
  }

  /** A new, unfitted detector with fresh stages. */
  async createDetector(): Promise<Detector> {
    const backbone = await this.backbone();
    const distiller = this.perCase.get('distiller') ? await this.perCase.get('distiller')!.getAsync<Distiller>(TOKENS.Distiller) : undefined;
    const scorer = (path: StagePath) => this.perCase.get(path)!.getAsync<DensityScorer>(TOKENS.DensityScorer);
    const { batchSize, skipBadFiles, seed, validationFraction, threshold } = this.config;
    return new Detector(
      {
        backbone,
        distiller,
        scorers: { pretrained: await scorer('scorers.pretrained'), finetuned: distiller ? await scorer('scorers.finetuned') : undefined },
        combiner: await this.perCase.get('combiner')!.getAsync<FeatureCombiner>(TOKENS.FeatureCombiner),
      },
      { batchSize, skipBadFiles, seed, validationFraction, threshold },
      this.progress,
      { config: this.config, plugins: { ...this.plugins } },
    );
  }

  /** `detector.save(dir, extra)`. */
  async saveDetector(detector: Detector, dir: string, extra: JsonObject = {}): Promise<void> {
    await detector.save(dir, extra);
  }

  /**
   * A fresh detector of this pipeline with the fitted state of the folder `dir` (written by `detector.save`), which is
   * verified first; its backbone must be this pipeline's, and its stages fitted by the same plugins.
   */
  async loadDetector(dir: string): Promise<Detector> {
    const folder = await readDetectorFolder(dir);
    const detector = await this.createDetector();
    detector.restore(dir, folder);
    return detector;
  }

  /** Releases the backbone and runtime if they were loaded; loads nothing. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    const settle = async <T>(p: Promise<T> | undefined) => (p ? p.then((v) => v, () => undefined) : undefined);
    const backbone = await settle(this.resolvedBackbone);
    await backbone?.dispose();
    // The backbone's runtime was made for it even if nobody asked for it by name.
    if (backbone) this.runtime();
    await (await settle(this.resolvedRuntime))?.dispose();
  }
}
