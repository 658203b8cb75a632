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

/** Versions of the installed Transformaly packages and engines, for the provenance of saved results. */
export async function packageVersions(): Promise<Record<string, string>> {
  const require = createRequire(join(dirname(fileURLToPath(import.meta.url)), 'x.js'));
  const out: Record<string, string> = { node: process.versions.node };
  for (const name of FIRST_PARTY) {
    try {
      const pkgPath = findPackageJson(require, name);
      if (pkgPath) out[name] = JSON.parse(await readFile(pkgPath, 'utf8')).version;
    } catch {
      // Not installed: a plugin the config does not use.
    }
  }
  return out;
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
