// Plugin packages describe themselves in their package.json, so that the core knows their names, versions and aliases
// without importing (running) any of them:
//
//   "transformaly": { "aliases": ["gaussian"], "provenance": ["onnxruntime-node"] }
//
// Installed packages named @transformaly/*, transformaly-plugin-* or @<scope>/transformaly-plugin-* that carry this
// field are found by `discoverPlugins`; a config may then use their aliases.
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, parse } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface PluginPackageInfo {
  name: string;
  version: string;
  /** Short names for the config (from `transformaly.aliases`). */
  aliases: string[];
  /** Versions of the engines listed in `transformaly.provenance`, as installed beside the package. */
  provenance: Record<string, string>;
}

interface PackageJson {
  name?: unknown;
  version?: unknown;
  transformaly?: { aliases?: unknown; provenance?: unknown };
}

/** The parsed package.json at `path`, or undefined when there is none (or it is not JSON). */
export function packageJsonOf(path: string): { name?: string; version?: string } | undefined {
  const json = readJson(path);
  if (!json) return undefined;
  return { name: typeof json.name === 'string' ? json.name : undefined, version: typeof json.version === 'string' ? json.version : undefined };
}

function readJson(path: string): PackageJson | undefined {
  try {
    const value = JSON.parse(readFileSync(path, 'utf8')) as unknown;
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as PackageJson) : undefined;
  } catch {
    return undefined;
  }
}

function stringList(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string' && v !== '') : [];
}

/**
 * Name, version, aliases and engine versions of the package that holds the module at `moduleUrl` (pass
 * `import.meta.url`): a plugin object then carries what its package.json says, in source and in the built files.
 */
export function pluginPackage(moduleUrl: string): PluginPackageInfo {
  let dir = dirname(fileURLToPath(moduleUrl));
  const { root } = parse(dir);
  for (;;) {
    const path = join(dir, 'package.json');
    const json = readJson(path);
    if (json && typeof json.name === 'string' && typeof json.version === 'string') {
      return { name: json.name, version: json.version, aliases: stringList(json.transformaly?.aliases), provenance: engineVersions(path, stringList(json.transformaly?.provenance)) };
    }
    if (dir === root) throw new Error(`pluginPackage: no package.json with a name and a version above ${fileURLToPath(moduleUrl)}`);
    dir = dirname(dir);
  }
}

function engineVersions(packageJsonPath: string, names: string[]): Record<string, string> {
  const require = createRequire(packageJsonPath);
  const out: Record<string, string> = {};
  for (const name of names) {
    for (const base of require.resolve.paths(name) ?? []) {
      const version = readJson(join(base, name, 'package.json'))?.version;
      if (typeof version === 'string') {
        out[name] = version;
        break;
      }
    }
  }
  return out;
}

export interface DiscoveredPlugins {
  /** Plugin packages by name (nearest installation first). */
  packages: Map<string, { version: string; dir: string; aliases: string[] }>;
  /** Alias -> the packages that declare it (more than one is an ambiguity the loader reports). */
  aliases: Map<string, string[]>;
}

const PLUGIN_PACKAGE = /^(@transformaly\/[^/]+|transformaly-plugin-[^/]+|@[^/]+\/transformaly-plugin-[^/]+)$/;

/**
 * The plugin packages installed where `baseDir` (the config's folder) or the core itself can import them from: the
 * node_modules folders of every ancestor folder of either. Reads package.json files only.
 */
export function discoverPlugins(baseDir: string): DiscoveredPlugins {
  const own = pluginPackage(import.meta.url).name;
  const packages: DiscoveredPlugins['packages'] = new Map();
  const aliases: DiscoveredPlugins['aliases'] = new Map();
  for (const modules of nodeModulesFolders([baseDir, dirname(fileURLToPath(import.meta.url))])) {
    for (const dir of pluginPackageDirs(modules)) {
      const json = readJson(join(dir, 'package.json'));
      // The core carries the field for its own engines, but is no plugin package.
      if (!json?.transformaly || typeof json.name !== 'string' || json.name === own || !PLUGIN_PACKAGE.test(json.name) || packages.has(json.name)) continue;
      const declared = stringList(json.transformaly.aliases);
      packages.set(json.name, { version: typeof json.version === 'string' ? json.version : '', dir, aliases: declared });
      for (const alias of declared) {
        const owners = aliases.get(alias) ?? [];
        if (!owners.includes(json.name)) owners.push(json.name);
        aliases.set(alias, owners);
      }
    }
  }
  return { packages, aliases };
}

function nodeModulesFolders(starts: string[]): string[] {
  const out: string[] = [];
  for (const start of starts) {
    let dir = start;
    const { root } = parse(dir);
    for (;;) {
      const candidate = join(dir, 'node_modules');
      if (!out.includes(candidate)) out.push(candidate);
      if (dir === root) break;
      dir = dirname(dir);
    }
  }
  return out;
}

function pluginPackageDirs(root: string): string[] {
  const out: string[] = [];
  for (const entry of list(root)) {
    if (entry.startsWith('@')) {
      for (const inner of list(join(root, entry))) if (PLUGIN_PACKAGE.test(`${entry}/${inner}`)) out.push(join(root, entry, inner));
    } else if (PLUGIN_PACKAGE.test(entry)) {
      out.push(join(root, entry));
    }
  }
  return out;
}

function list(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
