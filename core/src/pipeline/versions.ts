import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const FIRST_PARTY = [
  '@transformaly/core',
  '@transformaly/backbone-vit',
  '@transformaly/runtime-onnx',
  '@transformaly/runtime-tfjs',
  '@transformaly/scorer-gaussian',
  '@transformaly/scorer-knn',
  '@transformaly/scorer-gmm',
  'onnxruntime-node',
  'sharp',
];

const here = dirname(fileURLToPath(import.meta.url));

/** Versions of the installed Transformaly packages and engines, for the provenance of saved results. */
export async function packageVersions(): Promise<Record<string, string>> {
  const out: Record<string, string> = { node: process.versions.node };
  for (const name of FIRST_PARTY) {
    const version = await installedVersion(name, here);
    if (version !== undefined) out[name] = version;
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

/** The version of @transformaly/core itself, which the built-in stages share. */
export async function coreVersion(): Promise<string> {
  return JSON.parse(await readFile(join(here, '..', '..', 'package.json'), 'utf8')).version as string;
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
