import { resolve } from 'node:path';
import { providedKinds } from '../plugins/bind.js';
import { isPathReference, locatePlugin, PluginError, type LocatedPlugin } from '../plugins/loader.js';
import { STAGE_KINDS, STAGE_SLOTS, type StagePath, type StageSlot } from '../stages.js';
import type { JsonSchema, PluginRecord, ProgressReporter, ResolvedConfig, StageKind, StageRef, TransformalyPlugin } from '../types.js';
import { coreConfigSchema } from './schema.js';
import { ConfigError, type ConfigIssue, validateAgainst } from './validate.js';

export const CONFIG_DEFAULTS = {
  protocol: { mode: 'unimodal', classes: 'all' },
  runtime: { use: 'onnx' },
  distiller: { use: 'transformaly' },
  scorers: {
    pretrained: { use: 'gaussian', options: { whiten: { varianceFraction: 0.9 } } },
    finetuned: { use: 'gaussian' },
  },
  combiner: { use: 'sum' },
  batchSize: 32,
  skipBadFiles: false,
  seed: 0,
  validationFraction: 0.1,
  threshold: { quantile: 0.05 },
  outputDir: 'results',
  plugins: [],
} as const;

export interface LoadedStage {
  path: StagePath;
  slot: StageSlot;
  ref: StageRef;
  plugin: TransformalyPlugin;
  /** Name, version and origin of the plugin, as a saved detector records it. */
  record: PluginRecord;
}

export interface Resolution {
  config: ResolvedConfig;
  stages: LoadedStage[];
  extraPlugins: { ref: string; plugin: TransformalyPlugin; record: PluginRecord }[];
  /** The config's folder: where plugins named later (the numeric fallback runtime) are looked up from. */
  baseDir: string;
}

export interface ResolveOptions {
  file: string;
  baseDir: string;
  builtins: ReadonlyMap<string, TransformalyPlugin>;
  /** Receives deprecation warnings; without it they go to `process.emitWarning`. */
  progress?: ProgressReporter;
}

/**
 * Validates a raw config against the core schema and each named plugin's options schema, loads those plugins, and
 * fills in defaults. Every problem found, a value of the wrong type included, is reported at once in one ConfigError.
 */
export async function resolveConfig(raw: unknown, options: ResolveOptions): Promise<Resolution> {
  const data = cloneConfig(raw, options.file);
  const issues: ConfigIssue[] = validateAgainst(coreConfigSchema, data, '', options.baseDir);
  const config = withDefaults(data, options.baseDir);
  deprecations(config, options);

  // The config's `plugins` first: their names and aliases may be used by the stages below.
  const named = new Map<string, LocatedPlugin>();
  const extraPlugins: Resolution['extraPlugins'] = [];
  for (const [i, ref] of config.plugins.entries()) {
    try {
      const { plugin, record } = await locatePlugin(ref, { baseDir: options.baseDir, builtins: options.builtins });
      if (isPathReference(ref)) config.plugins[i] = resolve(options.baseDir, ref);
      const kinds = plugin.register ? await providedKinds(plugin, {}) : Object.keys(plugin.stages ?? {});
      if (kinds.length === 0) throw new PluginError(ref, `provides nothing (expected at least one of the stages ${Object.keys(STAGE_KINDS).join(', ')})`);
      for (const name of [plugin.name, ...(plugin.aliases ?? [])]) if (!options.builtins.has(name) && !named.has(name)) named.set(name, { plugin, record });
      extraPlugins.push({ ref, plugin, record });
    } catch (error) {
      issues.push({ path: `plugins[${i}]`, found: ref, expected: `a loadable plugin (${messageOf(error)})` });
    }
  }

  const stages: LoadedStage[] = [];
  for (const slot of STAGE_SLOTS) {
    const ref = get(config, slot.path);
    if (!isObject(ref) || typeof ref.use !== 'string') continue;
    const stage = await loadStage(slot, ref as StageRef, named, options, issues);
    if (stage) stages.push(stage);
  }
  if (issues.length > 0) throw new ConfigError(options.file, issues);
  return { config, stages, extraPlugins, baseDir: options.baseDir };
}

async function loadStage(
  slot: StageSlot,
  ref: StageRef,
  named: ReadonlyMap<string, LocatedPlugin>,
  options: ResolveOptions,
  issues: ConfigIssue[],
): Promise<LoadedStage | undefined> {
  const useRef = ref.use;
  const at = `${slot.path}.use`;
  let plugin: TransformalyPlugin;
  let record: PluginRecord;
  try {
    ({ plugin, record } = named.get(useRef) ?? (await locatePlugin(useRef, { baseDir: options.baseDir, builtins: options.builtins })));
  } catch (error) {
    issues.push({ path: at, found: useRef, expected: `a loadable plugin (${messageOf(error)})` });
    return undefined;
  }
  // A saved detector's config is reused from other folders (`transformaly score`): keep plugin files findable.
  if (isPathReference(useRef)) ref.use = resolve(options.baseDir, useRef);
  const label = STAGE_KINDS[slot.kind].label;
  if (plugin.stages && !plugin.stages[slot.kind]) {
    issues.push({ path: at, found: useRef, expected: `a plugin that provides ${label}, but "${plugin.name}" provides ${describeKinds(Object.keys(plugin.stages) as StageKind[])}` });
    return undefined;
  }
  if (ref.options === undefined) ref.options = {};
  // A wrong type here is already an issue of the core schema.
  if (!isObject(ref.options)) return undefined;
  const schema = strictOptionsSchema(plugin.stages ? plugin.stages[slot.kind]!.optionsSchema : plugin.optionsSchema);
  let optionIssues: ConfigIssue[];
  try {
    optionIssues = validateAgainst(schema, ref.options, `${slot.path}.options`, options.baseDir);
  } catch (error) {
    issues.push({ path: at, found: useRef, expected: `a plugin whose optionsSchema is a valid JSON schema ("${plugin.name}": ${messageOf(error)})` });
    return undefined;
  }
  issues.push(...optionIssues);
  if (optionIssues.length > 0) return undefined;
  const check = plugin.stages?.[slot.kind]?.checkOptions;
  if (check) {
    try {
      (check as (o: unknown) => void)(ref.options);
    } catch (error) {
      issues.push({ path: `${slot.path}.options`, found: ref.options, expected: `options "${plugin.name}" accepts: ${messageOf(error)}` });
      return undefined;
    }
  }
  if (plugin.register) {
    try {
      const kinds = await providedKinds(plugin, ref.options);
      if (!kinds.includes(slot.kind)) {
        issues.push({ path: at, found: useRef, expected: `a plugin that provides ${label}, but "${plugin.name}" provides ${describeKinds(kinds)}` });
        return undefined;
      }
    } catch (error) {
      issues.push({ path: at, found: useRef, expected: `a plugin that registers cleanly (${messageOf(error)})` });
      return undefined;
    }
  }
  return { path: slot.path, slot, ref, plugin, record };
}

function describeKinds(kinds: StageKind[]): string {
  return kinds.length === 0 ? 'nothing' : kinds.map((k) => STAGE_KINDS[k].label).join(', ');
}

/** Renamed settings that still work, with a warning naming the config path and the new spelling. */
function deprecations(config: ResolvedConfig, options: ResolveOptions): void {
  const threshold = config.threshold as { quantile?: unknown; contamination?: unknown };
  if (isObject(threshold) && 'contamination' in threshold && typeof threshold.contamination === 'number' && !('quantile' in threshold)) {
    const q = threshold.contamination;
    warn(
      options,
      `${options.file}: threshold.contamination is deprecated; it means the held-out quantile (the share of normal images ` +
        `flagged), not PyOD's share of outliers in the training data. Write threshold: { quantile: ${q} }.`,
    );
    config.threshold = { quantile: q };
  }
}

function warn(options: ResolveOptions, message: string): void {
  if (options.progress) options.progress.warn(message);
  else process.emitWarning(message, 'DeprecationWarning');
}

/** Unknown keys are errors in plugin options too, unless the plugin's schema explicitly allows them. */
function strictOptionsSchema(schema: JsonSchema | undefined): JsonSchema {
  const base = schema ?? NO_OPTIONS;
  if (base.type === 'object' && !('additionalProperties' in base) && !('unevaluatedProperties' in base)) {
    return strictCache.get(base) ?? strictCache.set(base, { ...base, additionalProperties: false }).get(base)!;
  }
  return base;
}
const NO_OPTIONS: JsonSchema = { type: 'object', properties: {}, additionalProperties: false };
const strictCache = new WeakMap<JsonSchema, JsonSchema>();

/** Defaults where the config says nothing; a value of the wrong type is left for the issues, never used. */
function withDefaults(data: Record<string, any>, baseDir: string): ResolvedConfig {
  const d = structuredClone(CONFIG_DEFAULTS) as Record<string, any>;
  const given = Object.fromEntries(Object.entries(data).filter(([, v]) => v !== undefined));
  const out: Record<string, any> = { ...d, ...given };
  out.protocol = isObject(data.protocol) ? { ...d.protocol, ...data.protocol } : d.protocol;
  out.scorers = isObject(data.scorers) ? { ...d.scorers, ...data.scorers } : d.scorers;
  for (const slot of STAGE_SLOTS) {
    const value = get(out, slot.path);
    if (typeof value === 'string') set(out, slot.path, { use: value });
  }
  if (!Array.isArray(out.plugins) || !out.plugins.every((p: unknown) => typeof p === 'string')) out.plugins = [];
  // Paths given in the config are relative to the config file, defaults to it too.
  out.outputDir = resolve(baseDir, typeof out.outputDir === 'string' ? out.outputDir : d.outputDir);
  return out as ResolvedConfig;
}

function cloneConfig(raw: unknown, file: string): Record<string, any> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError(file, [{ path: '', found: raw, expected: 'an object (the default export of the config file)' }]);
  }
  try {
    return structuredClone(raw) as Record<string, any>;
  } catch {
    throw new ConfigError(file, [{ path: '', found: raw, expected: 'plain data (no functions or class instances)' }]);
  }
}

function isObject(value: unknown): value is Record<string, any> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function get(obj: Record<string, any>, path: string): unknown {
  return path.split('.').reduce<any>((o, k) => (isObject(o) ? o[k] : undefined), obj);
}

function set(obj: Record<string, any>, path: string, value: unknown): void {
  const keys = path.split('.');
  const last = keys.pop()!;
  keys.reduce<any>((o, k) => o[k], obj)[last] = value;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
