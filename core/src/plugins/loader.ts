import { createJiti } from 'jiti';
import { existsSync, statSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { installedVersion } from '../pipeline/versions.js';
import { STAGE_KIND_NAMES } from '../stages.js';
import type { PluginRecord, TransformalyPlugin } from '../types.js';
import { isCorePlugin } from './define.js';
import { discoverPlugins, packageJsonOf, type DiscoveredPlugins } from './packages.js';

export class PluginError extends Error {
  constructor(
    /** The reference the config used (a name, an alias or a path), or the plugin's name. */
    readonly plugin: string,
    message: string,
    options?: { cause?: unknown; stage?: string },
  ) {
    super(`plugin "${plugin}"${options?.stage ? ` (${options.stage})` : ''}: ${message}`, options);
    this.name = 'PluginError';
    this.stage = options?.stage;
  }

  /** The config slot whose stage the plugin failed to provide, when known. */
  readonly stage: string | undefined;
}

export function isPathReference(ref: string): boolean {
  return ref.startsWith('.') || isAbsolute(ref) || /\.(m|c)?(t|j)s$/.test(ref);
}

export interface LoadOptions {
  baseDir: string;
  /** Plugins known by name without loading anything: the built-ins, those given in code, the config's `plugins`. */
  builtins?: ReadonlyMap<string, TransformalyPlugin>;
}

/**
 * Finds and loads a plugin: a built-in name, an alias declared by an installed plugin package, a file path (TS or JS,
 * relative to `baseDir`) or a package name (resolved from this package, then from `baseDir`).
 */
export async function loadPlugin(ref: string, options: LoadOptions): Promise<TransformalyPlugin> {
  return (await locatePlugin(ref, options)).plugin;
}

/** A plugin and the record of its name, version and origin that a saved detector keeps. */
export interface LocatedPlugin {
  plugin: TransformalyPlugin;
  record: PluginRecord;
}

/** `loadPlugin`, plus the record of the plugin's name, version and origin that a saved detector keeps. */
export async function locatePlugin(ref: string, options: LoadOptions): Promise<LocatedPlugin> {
  if (typeof ref !== 'string' || ref.trim() === '') throw new PluginError(String(ref), 'a plugin reference must be a non-empty name or path');
  const given = options.builtins?.get(ref);
  if (given) {
    // The caller's map holds the core's stages and any plugins a program passed in code.
    return { plugin: given, record: { name: given.name, version: given.version ?? null, source: isCorePlugin(given) ? 'builtin' : 'code' } };
  }
  if (isPathReference(ref)) {
    const file = resolve(options.baseDir, ref);
    if (!existsSync(file)) throw new PluginError(ref, `file ${file} does not exist`);
    let module: unknown;
    try {
      module = await createJiti(pathToFileURL(options.baseDir + '/').href, { interopDefault: false }).import(file);
    } catch (error) {
      throw new PluginError(ref, `${file} threw while loading: ${messageOf(error)}`, { cause: error });
    }
    // A folder is a package: its package.json may give the version the plugin object leaves out.
    const pkg = statSync(file).isDirectory() ? packageJsonOf(join(file, 'package.json')) : undefined;
    const plugin = checkedPlugin(ref, pluginFrom(ref, module), pkg?.version);
    return { plugin, record: { name: plugin.name, version: plugin.version, source: 'file', path: file } };
  }
  const installed = discoverPlugins(options.baseDir);
  const owners = installed.aliases.get(ref);
  if (owners && owners.length > 1) {
    throw new PluginError(ref, `the alias is declared by several installed packages (${[...owners].sort().join(', ')}); name the package instead`);
  }
  const specifier = owners?.[0] ?? ref;
  const module = await importPackage(ref, specifier, options, installed);
  const version = installed.packages.get(specifier)?.version ?? (await installedVersion(specifier, options.baseDir));
  const plugin = checkedPlugin(ref, pluginFrom(ref, module), version);
  return { plugin, record: { name: plugin.name, version: plugin.version, source: 'package', package: specifier } };
}

async function importPackage(ref: string, specifier: string, options: LoadOptions, installed: DiscoveredPlugins): Promise<unknown> {
  try {
    return await import(specifier);
  } catch (error) {
    if (!isNotFound(error, specifier)) {
      throw new PluginError(ref, `package ${specifier} threw while loading: ${messageOf(error)}`, { cause: error });
    }
  }
  try {
    return await createJiti(pathToFileURL(options.baseDir + '/').href, { interopDefault: false }).import(specifier);
  } catch (error) {
    if (isNotFound(error, specifier)) throw new PluginError(ref, notFoundMessage(ref, specifier, options, installed));
    throw new PluginError(ref, `package ${specifier} threw while loading: ${messageOf(error)}`, { cause: error });
  }
}

/**
 * Never advise installing the name as typed: a typo is often a real, unrelated package of the registry. The closest
 * known names and the file-path form instead.
 */
function notFoundMessage(ref: string, specifier: string, options: LoadOptions, installed: DiscoveredPlugins): string {
  const known = knownPluginNames(options.builtins, installed);
  const close = closestNames(ref, known);
  const what = specifier === ref ? `no built-in, alias or installed package is named "${ref}"` : `the alias "${ref}" names ${specifier}, which is not installed`;
  return (
    `${what} (looked from ${options.baseDir})` +
    (close.length > 0 ? `; did you mean ${close.map((n) => `"${n}"`).join(' or ')}?` : '') +
    ` Known names: ${known.join(', ')}. A plugin file is named by its path, e.g. "./my-plugin.ts".`
  );
}

/** Every name a config can use without a path: built-ins, aliases and plugin packages found installed. */
export function knownPluginNames(builtins: ReadonlyMap<string, TransformalyPlugin> | undefined, installed: DiscoveredPlugins): string[] {
  return [...new Set([...(builtins?.keys() ?? []), ...installed.aliases.keys(), ...installed.packages.keys()])];
}

/** The known names within a small edit distance of `name`, closest first. */
export function closestNames(name: string, known: readonly string[]): string[] {
  const limit = Math.max(2, Math.floor(name.length / 3));
  return known
    .map((k) => ({ k, d: editDistance(name.toLowerCase(), k.toLowerCase()) }))
    .filter(({ k, d }) => d <= limit && k !== name)
    .sort((a, b) => a.d - b.d || a.k.localeCompare(b.k))
    .slice(0, 3)
    .map(({ k }) => k);
}

/** Optimal string alignment distance: insertions, deletions, substitutions and transpositions of neighbours. */
function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d = Array.from({ length: rows }, (_, i) => Array.from({ length: cols }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[rows - 1][cols - 1];
}

function isNotFound(error: unknown, specifier: string): boolean {
  const e = error as NodeJS.ErrnoException;
  const notFound = e?.code === 'ERR_MODULE_NOT_FOUND' || e?.code === 'MODULE_NOT_FOUND' || /Cannot find (module|package)/.test(e?.message ?? '');
  // A plugin that exists but imports a missing dependency must be reported as a failing plugin, not a missing one.
  return notFound && (e.message ?? '').includes(`'${specifier}'`);
}

const EXPECTED_SHAPE =
  'expected a default (or "plugin") export { name, version, stages: { <kind>: { optionsSchema?, create(options, ctx) } } }' +
  ' or, in the advanced form, { name, version, optionsSchema?, register(options): ContainerModule }';

function pluginFrom(ref: string, module: unknown): unknown {
  const m = module as Record<string, unknown> | undefined;
  const candidates = [m?.plugin, m?.default, (m?.default as Record<string, unknown> | undefined)?.default, m];
  const plugin = candidates.find(looksLikePlugin);
  if (!plugin) throw new PluginError(ref, `exports no plugin: ${EXPECTED_SHAPE}`);
  return plugin;
}

function looksLikePlugin(value: unknown): boolean {
  const v = value as Record<string, unknown> | undefined;
  return typeof v === 'object' && v !== null && (typeof v.register === 'function' || (typeof v.stages === 'object' && v.stages !== null));
}

/**
 * Checks the plugin object against the plugin contract, naming each broken rule; fills in the version of the package
 * it came from when the object does not declare one.
 */
export function checkedPlugin(ref: string, value: unknown, packageVersion?: string): TransformalyPlugin {
  const plugin = value as TransformalyPlugin;
  const problems: string[] = [];
  if (typeof plugin.name !== 'string' || plugin.name === '') problems.push('"name" must be a non-empty string');
  const version = plugin.version ?? packageVersion;
  if (typeof version !== 'string' || version === '') {
    problems.push('"version" must be a string (declare it, or read name and version from package.json with pluginPackage(import.meta.url))');
  }
  if (plugin.stages !== undefined && plugin.register !== undefined) problems.push('declares both "stages" and "register": use one form');
  if (plugin.stages !== undefined) {
    for (const [kind, stage] of Object.entries(plugin.stages as Record<string, unknown>)) {
      if (!(STAGE_KIND_NAMES as string[]).includes(kind)) {
        problems.push(`stages.${kind}: unknown kind of stage (kinds: ${STAGE_KIND_NAMES.join(', ')})`);
        continue;
      }
      const s = stage as Record<string, unknown> | undefined;
      if (typeof s?.create !== 'function') problems.push(`stages.${kind}.create must be a function (options, ctx) => instance`);
      if (s?.optionsSchema !== undefined && !isObject(s.optionsSchema)) problems.push(`stages.${kind}.optionsSchema must be a JSON schema object`);
    }
  } else if (typeof plugin.register !== 'function') {
    problems.push('needs "stages" (or "register" in the advanced form)');
  } else if (plugin.optionsSchema !== undefined && !isObject(plugin.optionsSchema)) {
    problems.push('optionsSchema must be a JSON schema object');
  }
  if (plugin.aliases !== undefined && !(Array.isArray(plugin.aliases) && plugin.aliases.every((a) => typeof a === 'string' && a !== ''))) {
    problems.push('"aliases" must be a list of names');
  }
  if (problems.length > 0) throw new PluginError(ref, `breaks the plugin contract: ${problems.join('; ')}`);
  return plugin.version === version ? plugin : { ...plugin, version: version as string };
}

function isObject(value: unknown): boolean {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
