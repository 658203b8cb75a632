import { Container } from 'inversify';
import { createJiti } from 'jiti';
import { existsSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { TOKENS, type TokenName } from '../tokens.js';
import { coreVersion, installedVersion } from '../pipeline/versions.js';
import type { PluginRecord, TransformalyPlugin } from '../types.js';
import { BUILTIN_PLUGINS } from './builtins.js';

/** Short names for the first-party plugin packages. */
export const PLUGIN_ALIASES: Readonly<Record<string, string>> = {
  gaussian: '@transformaly/scorer-gaussian',
  knn: '@transformaly/scorer-knn',
  gmm: '@transformaly/scorer-gmm',
  vit: '@transformaly/backbone-vit',
  onnx: '@transformaly/runtime-onnx',
  tfjs: '@transformaly/runtime-tfjs',
  'transformaly-tfjs': '@transformaly/runtime-tfjs/students',
};

export class PluginError extends Error {
  constructor(
    readonly plugin: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`plugin "${plugin}": ${message}`, options);
    this.name = 'PluginError';
  }
}

export function isPathReference(ref: string): boolean {
  return ref.startsWith('.') || isAbsolute(ref) || /\.(m|c)?(t|j)s$/.test(ref);
}

/**
 * Finds and loads a plugin: a built-in name, an alias, a file path (TS or JS, relative to `baseDir`) or a package
 * name (resolved from this package, then from `baseDir`).
 */
export async function loadPlugin(
  ref: string,
  options: { baseDir: string; builtins?: ReadonlyMap<string, TransformalyPlugin> },
): Promise<TransformalyPlugin> {
  return (await locatePlugin(ref, options)).plugin;
}

/** `loadPlugin`, plus the record of the plugin's name, version and origin that a saved detector keeps. */
export async function locatePlugin(
  ref: string,
  options: { baseDir: string; builtins?: ReadonlyMap<string, TransformalyPlugin> },
): Promise<{ plugin: TransformalyPlugin; record: PluginRecord }> {
  const given = options.builtins?.get(ref);
  if (given) {
    // The caller's map holds the core's stages and any plugins a program passed in code.
    const builtin = BUILTIN_PLUGINS.get(ref) === given;
    return { plugin: given, record: { name: given.name, version: given.version ?? (builtin ? await coreVersion() : null), source: builtin ? 'builtin' : 'code' } };
  }
  const specifier = PLUGIN_ALIASES[ref] ?? ref;
  if (isPathReference(specifier)) {
    const file = resolve(options.baseDir, specifier);
    if (!existsSync(file)) throw new PluginError(ref, `file ${file} does not exist`);
    let module: unknown;
    try {
      module = await createJiti(pathToFileURL(options.baseDir + '/').href, { interopDefault: false }).import(file);
    } catch (error) {
      throw new PluginError(ref, `${file} threw while loading: ${(error as Error).message}`, { cause: error });
    }
    const plugin = pluginFrom(ref, module);
    return { plugin, record: { name: plugin.name, version: plugin.version ?? null, source: 'file', path: file } };
  }
  const plugin = pluginFrom(ref, await importPackage(ref, specifier, options.baseDir));
  const version = plugin.version ?? (await installedVersion(specifier, options.baseDir)) ?? null;
  return { plugin, record: { name: plugin.name, version, source: 'package', package: specifier } };
}

async function importPackage(ref: string, specifier: string, baseDir: string): Promise<unknown> {
  try {
    return await import(specifier);
  } catch (error) {
    if (!isNotFound(error, specifier)) {
      throw new PluginError(ref, `package ${specifier} threw while loading: ${(error as Error).message}`, { cause: error });
    }
  }
  try {
    return await createJiti(pathToFileURL(baseDir + '/').href, { interopDefault: false }).import(specifier);
  } catch (error) {
    if (isNotFound(error, specifier)) {
      const known = Object.keys(PLUGIN_ALIASES).join(', ');
      throw new PluginError(
        ref,
        `package ${specifier} is not installed (looked from ${baseDir}); install it with "npm install ${specifier}", or name a file path or one of: ${known}`,
      );
    }
    throw new PluginError(ref, `package ${specifier} threw while loading: ${(error as Error).message}`, { cause: error });
  }
}

function isNotFound(error: unknown, specifier: string): boolean {
  const e = error as NodeJS.ErrnoException;
  const notFound = e?.code === 'ERR_MODULE_NOT_FOUND' || e?.code === 'MODULE_NOT_FOUND' || /Cannot find (module|package)/.test(e?.message ?? '');
  // A plugin that exists but imports a missing dependency must be reported as a failing plugin, not a missing one.
  return notFound && (e.message ?? '').includes(`'${specifier}'`);
}

function pluginFrom(ref: string, module: unknown): TransformalyPlugin {
  const m = module as Record<string, unknown> | undefined;
  const candidates = [m?.plugin, m?.default, (m?.default as Record<string, unknown> | undefined)?.default, m];
  const plugin = candidates.find(isPlugin);
  if (!plugin) {
    throw new PluginError(ref, 'exports no plugin: expected a default (or "plugin") export { name: string, optionsSchema?: object, register(options): ContainerModule }');
  }
  return plugin;
}

function isPlugin(value: unknown): value is TransformalyPlugin {
  const v = value as TransformalyPlugin | undefined;
  return typeof v === 'object' && v !== null && typeof v.name === 'string' && typeof v.register === 'function';
}

/** Registers the plugin in a scratch container and returns which stage tokens it bound. */
export async function probeBindings(ref: string, plugin: TransformalyPlugin, options: unknown): Promise<TokenName[]> {
  let module;
  try {
    module = plugin.register(options);
  } catch (error) {
    throw new PluginError(ref, `register() threw: ${(error as Error).message}`, { cause: error });
  }
  const container = new Container();
  try {
    await container.loadAsync(module);
  } catch (error) {
    throw new PluginError(ref, `its bindings failed to load: ${(error as Error).message}`, { cause: error });
  }
  return (Object.keys(TOKENS) as TokenName[]).filter((name) => container.isBound(TOKENS[name]));
}
