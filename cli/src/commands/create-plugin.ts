// `transformaly create-plugin <kind> <name>`: a plugin package that builds, passes the conformance kit and can be
// published as it is. The sources come from templates/<kind>/ (real, minimal stages, each with its options schema and
// state); package.json and the README are written here, from what the kind needs.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeDirAtomic, writeFileAtomic } from '@transformaly/core';

export const PLUGIN_KINDS = ['scorer', 'combiner', 'backbone', 'runtime', 'data'] as const;
export type PluginKind = (typeof PLUGIN_KINDS)[number];

const TEMPLATES = fileURLToPath(new URL('../../templates/', import.meta.url));
const require = createRequire(import.meta.url);
const CLI = JSON.parse(readFileSync(fileURLToPath(new URL('../../package.json', import.meta.url)), 'utf8')) as { version: string };

/** The compiler and Node types the generated package builds with: the ones this repository builds with. */
export const BUILD_DEPENDENCIES = { typescript: '~5.9.3', '@types/node': '^20.19.0' };

interface KindInfo {
  /** What the stage is, after "a". */
  label: string;
  /** The stage in one sentence, for the README. */
  about: string;
  /** The config slot(s) and an example of its options, given how the config names the plugin. */
  config: (use: string) => string;
  /** Runtime dependencies beyond @transformaly/core. */
  dependencies: () => Record<string, string>;
  /** The options of the README's example, and what they mean. */
  options: string;
}

const KINDS: Record<PluginKind, KindInfo> = {
  scorer: {
    label: 'density scorer',
    about:
      'a Gaussian with a diagonal covariance: the normality score of a feature vector is its log-likelihood under the ' +
      "training features' means and variances (scikit-learn's `GaussianMixture(1, covariance_type='diag')`).",
    config: (use) => `scorers: { finetuned: { use: '${use}', options: { varianceFloor: 1e-6 } } },`,
    dependencies: () => ({}),
    options: '- `varianceFloor` (number >= 0, default 1e-6): added to every variance, so that a constant feature keeps a finite density.',
  },
  combiner: {
    label: 'feature combiner',
    about: "the weighted sum of the feature spaces' normality scores, one positive weight per space.",
    config: (use) => `combiner: { use: '${use}', options: { weights: { pretrained: 1, finetuned: 2 } } },`,
    dependencies: () => ({}),
    options: '- `weights.pretrained`, `weights.finetuned` (numbers > 0, default 1): the weight of each space\'s score.',
  },
  backbone: {
    label: 'backbone',
    about:
      'a pre-norm Vision Transformer read from one safetensors file in the timm layout (optionally under a prefix such ' +
      'as `model.`); the architecture comes from the tensor shapes, the ONNX graph from `@transformaly/backbone-vit`, ' +
      "and it runs on the pipeline's runtime. Change `readWeights` for another checkpoint format.",
    config: (use) => `backbone: { use: '${use}', options: { weights: './vit.safetensors', heads: 3 } },`,
    dependencies: () => ({ '@transformaly/backbone-vit': `^${CLI.version}` }),
    options: [
      '- `weights` (path, required): the .safetensors file, relative to the config file.',
      '- `heads` (integer, required): attention heads.',
      "- `prefix` (string, default ''): read only the tensors whose names start with it, without it.",
      '- `layerNormEps` (default 1e-6), `mean`, `std` (default 0.5 each): as the model was trained.',
    ].join('\n'),
  },
  runtime: {
    label: 'runtime',
    about:
      'ONNX graphs on onnxruntime-node with the execution providers you name (`cpu`, `cuda`, `tensorrt`, `dml`, ' +
      "`coreml`: those your onnxruntime build has). Replace the onnxruntime calls to run another engine.",
    config: (use) => `runtime: { use: '${use}', options: { executionProviders: ['cpu'], threads: 2 } },`,
    dependencies: () => ({ 'onnxruntime-node': dependencyRange('@transformaly/runtime-onnx', 'onnxruntime-node') }),
    options: [
      "- `executionProviders` (list, default ['cpu']): onnxruntime execution providers, in order of preference.",
      '- `threads` (integer >= 1, default 1): threads of one operator.',
    ].join('\n'),
  },
  data: {
    label: 'image source',
    about:
      'the images a CSV file lists, one per row `split,label,path` (split `train` or `test`, the class, the image ' +
      "file relative to the listing); the classes are the train split's labels.",
    config: (use) => `data: { use: '${use}', options: { listing: './images.csv' } },`,
    dependencies: () => ({}),
    options: [
      '- `listing` (path, required): the CSV file, relative to the config file.',
      '- `maxPixels` (integer): images with more pixels are refused before they are decoded.',
    ].join('\n'),
  },
};

/** The version range `pkg` (one of the CLI's dependencies) asks for `dependency`. */
function dependencyRange(pkg: string, dependency: string): string {
  let dir = dirname(require.resolve(pkg));
  while (!existsSync(join(dir, 'package.json'))) dir = dirname(dir);
  const json = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
  const range = json.dependencies?.[dependency];
  if (!range) throw new Error(`create-plugin: ${pkg} does not depend on ${dependency}`);
  return range;
}

export interface PluginNames {
  /** The npm package name: `transformaly-plugin-<name>` (or `@scope/transformaly-plugin-<name>`), found by the core. */
  packageName: string;
  /** The short name a config uses once the package is installed. */
  alias: string;
}

const NPM_NAME = /^(?:@([a-z0-9][a-z0-9._-]*)\/)?([a-z0-9][a-z0-9._-]*)$/;

/**
 * The package name and alias for a plugin called `name`: the core finds installed plugins by the package name
 * pattern `transformaly-plugin-*` (scoped or not), so a name without that prefix gets it.
 */
export function pluginNames(name: string): PluginNames {
  const match = NPM_NAME.exec(name);
  if (!match || name.length > 214) {
    throw new Error(`create-plugin: "${name}" is not an npm package name (lowercase letters, digits, "-", "." and "_", optionally @scope/name)`);
  }
  const [, scope, bare] = match;
  const alias = bare.replace(/^transformaly-plugin-/, '');
  if (alias === '') throw new Error(`create-plugin: "${name}" names no plugin after the transformaly-plugin- prefix`);
  return { packageName: `${scope ? `@${scope}/` : ''}transformaly-plugin-${alias}`, alias };
}

export interface ScaffoldOptions {
  kind: string;
  name: string;
  /** The folder to create; default `./<alias>` in `cwd`. */
  dir?: string;
  cwd?: string;
}

export interface Scaffolded extends PluginNames {
  kind: PluginKind;
  dir: string;
  /** The files written, relative to `dir`. */
  files: string[];
}

/** Writes the package into a new folder (never into one that holds anything). */
export async function scaffoldPlugin(options: ScaffoldOptions): Promise<Scaffolded> {
  const kind = options.kind as PluginKind;
  if (!PLUGIN_KINDS.includes(kind)) throw new Error(`create-plugin: unknown kind "${options.kind}" (kinds: ${PLUGIN_KINDS.join(', ')})`);
  const names = pluginNames(options.name);
  const dir = resolve(options.cwd ?? process.cwd(), options.dir ?? names.alias);
  if (existsSync(dir) && readdirSync(dir).length > 0) throw new Error(`create-plugin: ${dir} already exists and is not empty; choose another name or --dir`);
  const info = KINDS[kind];

  const files = new Map<string, string>();
  files.set('package.json', `${JSON.stringify(packageJson(kind, names, info), null, 2)}\n`);
  files.set('README.md', readme(kind, names, info, basename(dir)));
  // npm leaves .gitignore and .npmrc out of its own packages, so the templates keep them under plain names.
  files.set('.gitignore', await readFile(join(TEMPLATES, 'shared', 'gitignore'), 'utf8'));
  files.set('.npmrc', await readFile(join(TEMPLATES, 'shared', 'npmrc'), 'utf8'));
  files.set('tsconfig.json', await readFile(join(TEMPLATES, 'shared', 'tsconfig.json'), 'utf8'));
  for (const file of ['src/index.ts', 'test/plugin.test.ts']) files.set(file, await readFile(join(TEMPLATES, kind, file), 'utf8'));

  await writeDirAtomic(dir, async (tmp) => {
    for (const [file, text] of files) {
      await mkdir(dirname(join(tmp, file)), { recursive: true });
      await writeFileAtomic(join(tmp, file), text);
    }
  });
  return { ...names, kind, dir, files: [...files.keys()] };
}

function packageJson(kind: PluginKind, names: PluginNames, info: KindInfo): Record<string, unknown> {
  return {
    name: names.packageName,
    version: '0.1.0',
    description: `A ${info.label} for Transformaly`,
    keywords: ['transformaly', 'transformaly-plugin', `transformaly-${kind}`],
    type: 'module',
    engines: { node: '>=20.19' },
    main: './dist/src/index.js',
    types: './dist/src/index.d.ts',
    exports: { '.': { types: './dist/src/index.d.ts', default: './dist/src/index.js' } },
    files: ['dist/src'],
    scripts: {
      build: 'tsc',
      test: 'tsc && node --test dist/test/plugin.test.js',
      prepack: 'tsc',
    },
    // The core reads the aliases without running the package: a config may then say `use: '<alias>'`.
    transformaly: { aliases: [names.alias] },
    // The host's core: the plugin runs inside the pipeline of whoever installs it (npm installs peers by itself).
    peerDependencies: { '@transformaly/core': `^${CLI.version}` },
    ...(Object.keys(info.dependencies()).length > 0 ? { dependencies: info.dependencies() } : {}),
    devDependencies: { '@transformaly/testing': `^${CLI.version}`, ...BUILD_DEPENDENCIES },
  };
}

function readme(kind: PluginKind, names: PluginNames, info: KindInfo, folder: string): string {
  return `# ${names.packageName}

A ${info.label} plugin for [Transformaly](https://www.npmjs.com/package/transformaly): ${info.about}

## Use it

Installed beside your config (\`npm install ${names.packageName}\`), a config names it by its alias:

\`\`\`ts
// transformaly.config.ts
export default {
  ${info.config(names.alias)}
};
\`\`\`

While you develop it, a config next to this folder names it by path: \`'./${folder}'\` runs the build (\`dist/\`),
\`'./${folder}/src/index.ts'\` the sources (no build needed).

Options:

${info.options}

A saved detector records the plugin by its name and version. \`transformaly score\` finds an installed package by
itself; a plugin loaded from a folder or a file is given again, wherever it is now:
\`transformaly score -d DETECTOR --plugin ${names.packageName}=PATH IMAGES...\`.

## Develop

Node 20.19 or newer.

\`\`\`sh
npm install
npm test        # builds, then runs the conformance kit of @transformaly/testing and the plugin's own tests
\`\`\`

\`.npmrc\` skips the download of onnxruntime-node's CUDA provider (the tests run on the CPU; onnxruntime-node comes with
the kit). To get the CUDA provider, remove that line, or install with \`ONNXRUNTIME_NODE_INSTALL=cuda12\`.

- \`src/index.ts\`: the ${info.label} and the plugin object (\`definePlugin\`): name, version and alias from
  package.json, the options schema, \`create(options, ctx)\`${kind === 'scorer' || kind === 'combiner' ? ', the state a saved detector keeps (`exportState`, `importState`) and its ONNX form for `transformaly export` (`exportOnnx`)' : ''}.
- \`test/plugin.test.ts\`: the conformance kit (\`registerChecks(...)\` with \`node:test\`), then tests of the
  values themselves.

The contracts, the context \`create\` gets, and the errors the core gives are in the plugin reference,
docs/Reference/Plugins.md of the Transformaly repository.

## Publish

\`\`\`sh
npm pack --dry-run   # what would be published: dist/src, package.json, README.md
npm publish
\`\`\`

\`prepack\` builds first. Keep the \`name\` stable: saved detectors find the plugin by it.
`;
}

/** Whether `name` is installed in a node_modules folder of `dir` or above it, where the package's imports look. */
function installedAbove(dir: string, name: string): boolean {
  for (let at = dir; ; at = dirname(at)) {
    if (existsSync(join(at, 'node_modules', name, 'package.json'))) return true;
    if (dirname(at) === at) return false;
  }
}

/** The command: writes the package and says what to do next. */
export async function createPluginCommand(kind: string, name: string, options: { dir?: string }): Promise<void> {
  const made = await scaffoldPlugin({ kind, name, dir: options.dir });
  const where = relative(process.cwd(), made.dir) || '.';
  // In a project that has the kit installed, the plugin's folder uses the project's packages: no install needed.
  const install = installedAbove(made.dir, '@transformaly/testing') ? '' : '  npm install\n';
  process.stdout.write(
    `created ${made.packageName}, a ${KINDS[made.kind].label} plugin, in ${where}/:\n` +
      made.files.map((f) => `  ${f}\n`).join('') +
      `\nnext:\n  cd ${where}\n${install}  npm test\n` +
      `\nthen, in a config beside ${where}/:\n  ${KINDS[made.kind].config(`./${where}/src/index.ts`)}\n`,
  );
}
