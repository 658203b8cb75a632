import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CORE_PACKAGE, isCorePlugin } from '../plugins/define.js';
import type { TransformalyPlugin } from '../types.js';

const here = dirname(fileURLToPath(import.meta.url));

/**
 * Versions for the provenance of saved results: Node, the core with its engines, and each plugin package in use with
 * the engines it declares (`provenance`, e.g. onnxruntime-node). Nothing is looked up by a hard-coded package name.
 */
export async function packageVersions(plugins: readonly TransformalyPlugin[] = []): Promise<Record<string, string>> {
  const out: Record<string, string> = { node: process.versions.node, [CORE_PACKAGE.name]: CORE_PACKAGE.version, ...CORE_PACKAGE.provenance };
  for (const plugin of plugins) {
    if (isCorePlugin(plugin)) continue;
    out[plugin.name] = plugin.version;
    Object.assign(out, plugin.provenance ?? {});
  }
  return out;
}

/** The package a module specifier belongs to: `@scope/name/sub/path` -> `@scope/name`. */
export function packageNameOf(specifier: string): string {
  const parts = specifier.split('/');
  return parts.slice(0, specifier.startsWith('@') ? 2 : 1).join('/');
}

/**
 * The version of the package that `specifier` resolves to, looked up from this package and then from `baseDir`;
 * undefined when it is not installed.
 */
export async function installedVersion(specifier: string, baseDir: string): Promise<string | undefined> {
  const name = packageNameOf(specifier);
  for (const from of new Set([here, baseDir])) {
    const pkgPath = findPackageJson(createRequire(join(from, 'x.js')), name);
    if (!pkgPath) continue;
    try {
      const version = JSON.parse(await readFile(pkgPath, 'utf8')).version;
      if (typeof version === 'string') return version;
    } catch {
      continue;
    }
  }
  return undefined;
}

function findPackageJson(require: NodeJS.Require, name: string): string | undefined {
  for (const base of require.resolve.paths(name) ?? []) {
    const candidate = join(base, name, 'package.json');
    try {
      require.resolve(candidate);
      return candidate;
    } catch {
      continue;
    }
  }
  return undefined;
}
