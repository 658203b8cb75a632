import { join } from 'node:path';
import { MANIFEST_FILE, readDetectorFolder, type DetectorManifest } from '../persistence/index.js';
import { BUILTIN_PLUGINS } from '../plugins/builtins.js';
import { isPathReference, loadPlugin } from '../plugins/loader.js';
import { corePlugin } from '../plugins/define.js';
import { STAGE_SLOTS } from '../stages.js';
import type { ImageSource, PluginRecord, ProgressReporter, TransformalyConfig, TransformalyPlugin } from '../types.js';
import { createPipeline, type Pipeline } from './compose.js';
import type { Detector } from './detector.js';
import { installedVersion } from './versions.js';

export interface OpenDetectorOptions {
  /**
   * Plugins given by the caller, by the name the detector records (or its package name): a plugin file that moved, or
   * one defined in code. The CLI's `score --plugin NAME=PATH` fills this.
   */
  plugins?: Record<string, TransformalyPlugin>;
  progress?: ProgressReporter;
  /** Where installed plugin packages are also looked up, besides @transformaly/core's own (default: cwd). */
  baseDir?: string;
}

export interface OpenedDetector {
  detector: Detector;
  /** The pipeline rebuilt from the folder: its stages, no data set. */
  pipeline: Pipeline;
  manifest: DetectorManifest;
  /** Releases the detector's and the pipeline's sessions. */
  dispose(): Promise<void>;
}

/** The stages a detector needs to score (all but the data set), in the order of the stage table. */
const SCORING_STAGES = STAGE_SLOTS.filter((s) => s.kind !== 'data').map((s) => s.path);

const NO_DATA = 'detector-folder';

/** Stands in for the data set of a pipeline opened from a detector folder, which scores the images it is given. */
function noDataPlugin(dir: string): TransformalyPlugin {
  const fail = (): never => {
    throw new Error(`this pipeline was opened from the detector folder ${dir} to score images; it has no data set (cases() needs a config with data)`);
  };
  const source: ImageSource = { name: NO_DATA, classes: async () => fail(), items: async () => fail() };
  return corePlugin({ name: NO_DATA, stages: { data: { create: () => source } } });
}

/**
 * Opens a detector folder without a config file: verifies it (checksums, manifest), rebuilds its pipeline from the
 * recorded config, and restores the fitted stages. The folder is data: nothing it names is imported as a file.
 * Each stage's plugin comes from the core's built-ins, from the installed package the folder records, or from
 * `options.plugins`; a plugin found nowhere is reported by its recorded name and version.
 */
export async function openDetector(dir: string, options: OpenDetectorOptions = {}): Promise<OpenedDetector> {
  const folder = await readDetectorFolder(dir);
  const { manifest } = folder;
  const baseDir = options.baseDir ?? process.cwd();
  const config = structuredClone(manifest.config) as Record<string, any>;
  const given = new Map<string, TransformalyPlugin>();
  const problems: string[] = [];

  /** What the stage's `use` becomes: a built-in's name, an installed package, or the name of a plugin the caller gave. */
  const use = async (slot: string): Promise<string | undefined> => {
    const record = manifest.plugins[slot];
    if (!record) {
      problems.push(`the manifest records no plugin for ${slot}`);
      return undefined;
    }
    const found = await pluginFor(record, slot, baseDir, options.plugins ?? {});
    if (typeof found === 'string') {
      problems.push(found);
      return undefined;
    }
    if ('use' in found) return found.use;
    given.set(record.name, found.given);
    return record.name;
  };

  for (const slot of SCORING_STAGES) {
    const [head, tail] = slot.split('.') as [string, string | undefined];
    const ref = tail ? config[head]?.[tail] : config[head];
    if (ref === false || ref === undefined) continue;
    if (slot === 'scorers.finetuned' && config.distiller === false) {
      // Unused without a distiller: give it the pre-trained space's plugin rather than require another one.
      config.scorers.finetuned = structuredClone(config.scorers.pretrained);
      continue;
    }
    const name = await use(slot);
    if (name !== undefined) ref.use = name;
  }
  const extras = Object.keys(manifest.plugins).filter((key) => /^plugins\.\d+$/.test(key));
  config.plugins = [];
  for (const key of extras) {
    const name = await use(key);
    if (name !== undefined) config.plugins.push(name);
  }
  if (problems.length > 0) throw new Error(`cannot open the detector ${dir}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);

  config.data = { use: NO_DATA };
  given.set(NO_DATA, noDataPlugin(dir));
  const pipeline = await createPipeline(config as TransformalyConfig, {
    baseDir,
    configFile: join(dir, MANIFEST_FILE),
    progress: options.progress,
    plugins: Object.fromEntries(given),
  });
  try {
    const detector = await pipeline.createDetector();
    detector.restore(dir, folder);
    return {
      detector,
      pipeline,
      manifest,
      async dispose() {
        await detector.dispose();
        await pipeline.dispose();
      },
    };
  } catch (error) {
    await pipeline.dispose();
    throw error;
  }
}

/**
 * Where the plugin a record names comes from now: a built-in or an installed package (named by the stage's `use`), or
 * a plugin the caller gave; else a sentence saying why it cannot be had and how to supply it.
 */
async function pluginFor(
  record: PluginRecord,
  slot: string,
  baseDir: string,
  plugins: Record<string, TransformalyPlugin>,
): Promise<{ use: string } | { given: TransformalyPlugin } | string> {
  const what = `${slot} plugin "${record.name}"${record.version ? ` version ${record.version}` : ''}`;
  const advice = `give it with --plugin ${record.name}=PATH (in code: openDetector(dir, { plugins: { ${JSON.stringify(record.name)}: plugin } }))`;
  const given = plugins[record.name] ?? (record.package ? plugins[record.package] : undefined);
  if (given) {
    if (given.name !== record.name) return `the plugin given for "${record.name}" is named "${given.name}"; the ${slot} stage was fitted by "${record.name}"`;
    return { given };
  }
  switch (record.source) {
    case 'builtin': {
      const builtin = [...BUILTIN_PLUGINS].find(([, plugin]) => plugin.name === record.name);
      return builtin ? { use: builtin[0] } : `${what} was built into @transformaly/core when the detector was fitted, and this version has no such stage; ${advice}`;
    }
    case 'package': {
      const specifier = record.package;
      // The manifest's schema allows only bare package names; a name that would be taken for a file is never one.
      if (!specifier || isPathReference(specifier)) return `${what}: the manifest names no installed package to import it from`;
      if ((await installedVersion(specifier, baseDir)) === undefined) {
        return `${what} comes from the package ${specifier}, which is not installed here (looked from ${baseDir}); install ${specifier}${record.version ? `@${record.version}` : ''}, or ${advice}`;
      }
      let plugin: TransformalyPlugin;
      try {
        plugin = await loadPlugin(specifier, { baseDir });
      } catch (error) {
        return `${what}: the installed package ${specifier} could not be loaded (${(error as Error).message})`;
      }
      if (plugin.name !== record.name) return `${what}: the installed package ${specifier} now provides a plugin named "${plugin.name}"; ${advice}`;
      return { use: specifier };
    }
    default: {
      const origin = record.source === 'file' ? `loaded from the file ${record.path ?? '(unknown)'}` : 'given in code';
      return `${what} was ${origin} when the detector was fitted, and a detector folder never makes Transformaly import code; ${advice}`;
    }
  }
}
