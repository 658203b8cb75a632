import { Container } from 'inversify';
import { loadConfigFile, configBaseDir } from '../config/load.js';
import { resolveConfig, type LoadedStage, type Resolution } from '../config/resolve.js';
import { makeCases } from '../data/index.js';
import { readDetectorFolder } from '../persistence/index.js';
import { createNumericEngine, offersNumerics, type NumericRuntime } from '../numeric/engine.js';
import { loadModule, registeredModule, resolveStage, stageModule, stageResolver } from '../plugins/bind.js';
import { BUILTIN_PLUGINS } from '../plugins/builtins.js';
import { loadPlugin } from '../plugins/loader.js';
import { STAGE_KINDS, stageSlot, type StagePath } from '../stages.js';
import { SilentProgress } from '../progress.js';
import { TOKENS } from '../tokens.js';
import type {
  Backbone,
  DensityScorer,
  Distiller,
  FeatureCombiner,
  ImageSource,
  JsonObject,
  NumericEngine,
  PluginRecord,
  ProgressReporter,
  ProtocolCase,
  ResolvedConfig,
  Runtime,
  TransformalyConfig,
  TransformalyPlugin,
} from '../types.js';
import { Detector } from './detector.js';
import { packageVersions } from './versions.js';

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
  const resolution = await resolveConfig(config, { file: options.configFile ?? 'config', baseDir, builtins, progress: options.progress });
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
  /** Each stage's own container: per-detector stages resolve fresh instances from a child of the root. */
  private readonly containers = new Map<StagePath, Container>();
  /** Per-detector instances already handed to a detector: a plugin that hands one out twice breaks its contract. */
  private readonly handedOut = new WeakSet<object>();
  private readonly loading: Promise<void>;
  private disposed = false;
  private resolvedRuntime: Promise<Runtime> | undefined;
  private resolvedBackbone: Promise<Backbone> | undefined;
  /** Name, version and origin of each stage's plugin (and `plugins.<i>` for the extra ones), for saved detectors. */
  readonly plugins: Readonly<Record<string, PluginRecord>>;
  private resolvedNumeric: Promise<NumericEngine> | undefined;
  /** The runtime (and its plugin) that runs the numerics when the configured one has no float64 kernels. */
  private numericRuntime: Runtime | undefined;
  private numericPlugin: TransformalyPlugin | undefined;

  constructor(
    private readonly resolution: Resolution,
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
    this.root.bind(TOKENS.NumericEngine).toDynamicValue(() => this.numeric()).inSingletonScope();
    this.loading = this.load();
    // Reported by the first resolution that awaits it, never as an unhandled rejection.
    this.loading.catch(() => undefined);
  }

  private async load(): Promise<void> {
    for (const { plugin } of this.resolution.extraPlugins) {
      if (plugin.register) await loadModule(this.root, registeredModule(plugin, {}), plugin);
    }
    for (const stage of this.stages.values()) {
      const container = STAGE_KINDS[stage.slot.kind].scope === 'pipeline' ? this.root : new Container({ parent: this.root });
      await loadModule(container, stageModule(stage.plugin, stage.slot, stage.ref.options ?? {}), stage.plugin, stage.path);
      this.containers.set(stage.path, container);
    }
  }

  private async resolve<T>(path: StagePath): Promise<T> {
    await this.loading;
    const stage = this.stages.get(path)!;
    return resolveStage<T>(this.containers.get(path)!, stage.slot, stage.plugin, STAGE_KINDS[stage.slot.kind].scope === 'detector' ? this.handedOut : undefined);
  }

  source(): Promise<ImageSource> {
    return this.resolve<ImageSource>('data');
  }

  runtime(): Promise<Runtime> {
    return (this.resolvedRuntime ??= this.resolve<Runtime>('runtime'));
  }

  /** The backbone, loaded (and downloaded) on first use. */
  backbone(): Promise<Backbone> {
    return (this.resolvedBackbone ??= this.runtime().then(() => this.resolve<Backbone>('backbone')));
  }

  /**
   * The numeric engine of the scorers and combiners: the configured runtime's, with its threads. A runtime without
   * float64 kernels (tfjs) leaves the numerics to the `onnx` runtime plugin, with as many threads, and says so.
   */
  numeric(): Promise<NumericEngine> {
    return (this.resolvedNumeric ??= (async () => {
      const runtime = await this.runtime();
      if (offersNumerics(runtime)) return createNumericEngine(runtime);
      const fallback = await this.numericFallback(runtime);
      this.progress.info(
        `runtime "${runtime.name}" has no float64 kernels: the scorers' numerics run on the "${NUMERIC_FALLBACK}" runtime (${fallback.threads} thread${fallback.threads === 1 ? '' : 's'})`,
      );
      return createNumericEngine(fallback);
    })());
  }

  private async numericFallback(runtime: Runtime): Promise<Runtime & NumericRuntime> {
    const why = `runtime "${runtime.name}" offers no numeric engine (Runtime.createNumericSession), which the scorers need in float64`;
    let plugin: TransformalyPlugin;
    try {
      plugin = await loadPlugin(NUMERIC_FALLBACK, { baseDir: this.resolution.baseDir });
    } catch (error) {
      throw new Error(`${why}; the "${NUMERIC_FALLBACK}" runtime plugin that would run them cannot be loaded: ${(error as Error).message}`, { cause: error });
    }
    const resolver = await stageResolver<Runtime>(plugin, stageSlot('runtime'), { threads: runtime.threads }, { progress: this.progress });
    const fallback = await resolver();
    this.numericRuntime = fallback;
    this.numericPlugin = plugin;
    if (!offersNumerics(fallback)) throw new Error(`${why}, and neither does "${plugin.name}"`);
    return fallback;
  }

  /** The protocol cases of the config's data set: one per listed class. */
  async cases(): Promise<ProtocolCase[]> {
    const { mode, classes, limit } = this.config.protocol;
    return makeCases(await this.source(), { mode, classes, limit, seed: this.config.seed });
  }

  /** A new, unfitted detector with fresh stages, each checked against its contract. */
  async createDetector(): Promise<Detector> {
    const backbone = await this.backbone();
    // Resolved first, so that a failing engine is reported as such and not as the first scorer's failure.
    await this.numeric();
    const distiller = this.stages.has('distiller') ? await this.resolve<Distiller>('distiller') : undefined;
    const scorer = (path: 'scorers.pretrained' | 'scorers.finetuned') => this.resolve<DensityScorer>(path);
    const { batchSize, skipBadFiles, seed, validationFraction, threshold } = this.config;
    return new Detector(
      {
        backbone,
        distiller,
        scorers: { pretrained: await scorer('scorers.pretrained'), finetuned: distiller ? await scorer('scorers.finetuned') : undefined },
        combiner: await this.resolve<FeatureCombiner>('combiner'),
      },
      { batchSize, skipBadFiles, seed, validationFraction, threshold },
      this.progress,
      { config: this.config, plugins: { ...this.plugins }, packages: await this.packageVersions() },
    );
  }

  /** The plugin objects this pipeline uses (config stages, the config's `plugins`, a numeric fallback), each once. */
  private pluginObjects(): TransformalyPlugin[] {
    const all = [...this.stages.values()].map((s) => s.plugin).concat(this.resolution.extraPlugins.map((e) => e.plugin));
    if (this.numericPlugin) all.push(this.numericPlugin);
    return [...new Set(all)];
  }

  /** Versions of Node, the core and every plugin in use (and the engines they declare), for provenance. */
  packageVersions(): Promise<Record<string, string>> {
    return packageVersions(this.pluginObjects());
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

  /** Releases the numeric engine, the backbone and the runtime(s) if they were loaded; loads nothing. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    const settle = async <T>(p: Promise<T> | undefined) => (p ? p.then((v) => v, () => undefined) : undefined);
    await (await settle(this.resolvedNumeric))?.dispose();
    const backbone = await settle(this.resolvedBackbone);
    await backbone?.dispose();
    await (await settle(this.resolvedRuntime))?.dispose();
    await this.numericRuntime?.dispose();
  }
}

/** The runtime plugin that runs the numerics of a pipeline whose runtime has no float64 kernels. */
export const NUMERIC_FALLBACK = 'onnx';
