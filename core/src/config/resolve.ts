import { resolve } from 'node:path';
import { isPathReference, locatePlugin, PluginError, probeBindings } from '../plugins/loader.js';
import { TOKENS, type TokenName } from '../tokens.js';
import type { JsonSchema, PluginRecord, ResolvedConfig, StageRef, TransformalyPlugin } from '../types.js';
import { coreConfigSchema } from './schema.js';
import { ConfigError, type ConfigIssue, validateAgainst } from './validate.js';

/** The stages a config names, the token each must bind, and what a user calls it. */
export const STAGE_SLOTS = [
  { path: 'data', token: 'ImageSource', label: 'an image source' },
  { path: 'runtime', token: 'Runtime', label: 'a runtime' },
  { path: 'backbone', token: 'Backbone', label: 'a backbone' },
  { path: 'distiller', token: 'Distiller', label: 'a distiller' },
  { path: 'scorers.pretrained', token: 'DensityScorer', label: 'a density scorer' },
  { path: 'scorers.finetuned', token: 'DensityScorer', label: 'a density scorer' },
  { path: 'combiner', token: 'FeatureCombiner', label: 'a feature combiner' },
] as const satisfies readonly { path: string; token: TokenName; label: string }[];

export type StagePath = (typeof STAGE_SLOTS)[number]['path'];

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
  ref: StageRef;
  plugin: TransformalyPlugin;
  /** Name, version and origin of the plugin, as a saved detector records it. */
  record: PluginRecord;
}

export interface Resolution {
  config: ResolvedConfig;
  stages: LoadedStage[];
  extraPlugins: { ref: string; plugin: TransformalyPlugin; record: PluginRecord }[];
}

/**
 * Validates a raw config against the core schema and each named plugin's options schema, loads those plugins, and
 * fills in defaults. Every problem found is reported at once in one ConfigError.
 */
export async function resolveConfig(
  raw: unknown,
  options: { file: string; baseDir: string; builtins: ReadonlyMap<string, TransformalyPlugin> },
): Promise<Resolution> {
  const data = cloneConfig(raw, options.file);
  const issues: ConfigIssue[] = validateAgainst(coreConfigSchema, data, '', options.baseDir);
  const config = withDefaults(data, options.baseDir);
  const stages: LoadedStage[] = [];
  for (const slot of STAGE_SLOTS) {
    const ref = get(config, slot.path) as StageRef | false | undefined;
    if (!ref || typeof ref !== 'object' || typeof ref.use !== 'string') continue;
    const useRef = ref.use;
    let plugin: TransformalyPlugin;
    let record: PluginRecord;
    try {
      ({ plugin, record } = await locatePlugin(useRef, options));
    } catch (error) {
      issues.push({ path: `${slot.path}.use`, found: useRef, expected: `a loadable plugin (${messageOf(error)})` });
      continue;
    }
    // A saved detector's config is reused from other folders (`transformaly score`): keep plugin files findable.
    if (isPathReference(useRef)) ref.use = resolve(options.baseDir, useRef);
    const pluginOptions = (ref.options ??= {});
    const schema = strictOptionsSchema(plugin.optionsSchema);
    let optionIssues: ConfigIssue[];
    try {
      optionIssues = validateAgainst(schema, pluginOptions, `${slot.path}.options`, options.baseDir);
    } catch (error) {
      issues.push({ path: `${slot.path}.use`, found: useRef, expected: `a plugin whose optionsSchema is a valid JSON schema ("${plugin.name}": ${messageOf(error)})` });
      continue;
    }
    issues.push(...optionIssues);
    if (optionIssues.length > 0) continue;
    try {
      const bound = await probeBindings(useRef, plugin, pluginOptions);
      if (!bound.includes(slot.token)) {
        issues.push({
          path: `${slot.path}.use`,
          found: useRef,
          expected: `a plugin that provides ${slot.label}, but "${plugin.name}" binds ${bound.length ? bound.join(', ') : 'nothing'}`,
        });
        continue;
      }
    } catch (error) {
      issues.push({ path: `${slot.path}.use`, found: useRef, expected: `a plugin that registers cleanly (${messageOf(error)})` });
      continue;
    }
    stages.push({ path: slot.path, ref, plugin, record });
  }
  const extraPlugins: Resolution['extraPlugins'] = [];
  for (const [i, ref] of (config.plugins ?? []).entries()) {
    if (typeof ref !== 'string') continue;
    try {
      const { plugin, record } = await locatePlugin(ref, options);
      if (isPathReference(ref)) config.plugins[i] = resolve(options.baseDir, ref);
      const bound = await probeBindings(ref, plugin, {});
      if (bound.length === 0) throw new PluginError(ref, `binds nothing (expected it to bind one of ${Object.keys(TOKENS).join(', ')})`);
      extraPlugins.push({ ref, plugin, record });
    } catch (error) {
      issues.push({ path: `plugins[${i}]`, found: ref, expected: `a loadable plugin (${messageOf(error)})` });
    }
  }
  if (issues.length > 0) throw new ConfigError(options.file, issues);
  return { config, stages, extraPlugins };
}

/** Unknown keys are errors in plugin options too, unless the plugin's schema explicitly allows them. */
function strictOptionsSchema(schema: JsonSchema | undefined): JsonSchema {
  const base = schema ?? { type: 'object', properties: {}, additionalProperties: false };
  if (base.type === 'object' && !('additionalProperties' in base) && !('unevaluatedProperties' in base)) {
    return strictCache.get(base) ?? strictCache.set(base, { ...base, additionalProperties: false }).get(base)!;
  }
  return base;
}
const strictCache = new WeakMap<JsonSchema, JsonSchema>();

function withDefaults(data: Record<string, any>, baseDir: string): ResolvedConfig {
  const d = structuredClone(CONFIG_DEFAULTS) as Record<string, any>;
  const out: Record<string, any> = { ...d, ...data };
  out.protocol = { ...d.protocol, ...(data.protocol ?? {}) };
  out.scorers = { ...d.scorers, ...(data.scorers ?? {}) };
  for (const slot of STAGE_SLOTS) {
    const value = get(out, slot.path);
    if (typeof value === 'string') set(out, slot.path, { use: value });
  }
  // Paths given in the config are relative to the config file, defaults to it too.
  out.outputDir = resolve(baseDir, out.outputDir);
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

function get(obj: Record<string, any>, path: string): unknown {
  return path.split('.').reduce<any>((o, k) => o?.[k], obj);
}

function set(obj: Record<string, any>, path: string, value: unknown): void {
  const keys = path.split('.');
  const last = keys.pop()!;
  keys.reduce<any>((o, k) => o[k], obj)[last] = value;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
