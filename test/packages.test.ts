// Every package as someone outside this repository gets it: packed once, checked (exports, types, files, bin,
// dependencies, versions), installed from the tarballs into a folder of its own (offline, onnxruntime's CUDA download
// skipped as the READMEs say), and used there as the quick start of docs/Reference/Plugins.md says, its blocks run as
// written: a plugin scaffolded by the installed CLI builds and passes the conformance kit, runs in `npx transformaly
// run` from a config that imports @transformaly/core, and scores with the saved detector after its folder moved
// (`--plugin`); then a program runs it through createPipeline and openDetector.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IdxSource, parseCsv } from '@transformaly/core';
import { densityScorerChecks } from '@transformaly/testing';
import { docBlock } from './fixtures/doc-blocks.js';
import { installOffline, packWorkspaces, repo, type PackedPackage } from './fixtures/packages.js';

const work = mkdtempSync(join(tmpdir(), 'transformaly-outside-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const project = join(work, 'project');
const PLUGIN = 'transformaly-plugin-my-scorer';

let packed: PackedPackage[] = [];
const rootPackage = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { engines: { node: string } };
const manifestOf = (p: PackedPackage) => JSON.parse(readFileSync(join(repo, p.folder, 'package.json'), 'utf8')) as Record<string, any>;

/** A command in the project folder, as its user types it. */
function sh(command: string, args: string[], cwd = project) {
  const result = spawnSync(command, args, { cwd, encoding: 'utf8', env: { ...process.env, DEBUG: '' } });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

const QUICK_START = join(repo, 'docs', 'Reference', 'Plugins.md');
/** A step of the quick start, its shell block run as written from the project's folder. */
const quickStart = (step: string) => sh('bash', ['-e', '-c', docBlock(QUICK_START, 'quick-start', step).code]);

beforeAll(async () => {
  packed = packWorkspaces(join(work, 'packs'));
  mkdirSync(project);
  // Every package, and what a plugin author builds with.
  installOffline(project, packed, [...packed.map((p) => p.name), 'typescript', '@types/node']);
  await writeImages(join(project, 'images'));
}, 600_000);

/**
 * The quick start's layout, from the demo Fashion-MNIST subset: trousers are normal (train/, test/normal/), bags
 * abnormal (test/abnormal/), as PNG files.
 */
async function writeImages(root: string): Promise<void> {
  const source = new IdxSource({ dir: join(repo, 'demo', 'fashion-mnist'), classNames: 'fashion-mnist' });
  const folders = [
    ['train', 'train', 'Trouser', 16],
    ['test', 'test/normal', 'Trouser', 6],
    ['test', 'test/abnormal', 'Bag', 6],
  ] as const;
  for (const [split, folder, label, count] of folders) {
    mkdirSync(join(root, folder), { recursive: true });
    const items = (await source.items(split)).filter((item) => item.label === label).slice(0, count);
    for (const [i, item] of items.entries()) {
      const { width, height, data } = await item.load();
      const bytes = Uint8Array.from(data, (v) => Math.round(v * 255));
      await sharp(bytes, { raw: { width, height, channels: 3 } }).png().toFile(join(root, folder, `${i}.png`));
    }
  }
}

describe('the packed packages', () => {
  it('export built JavaScript and types that are in the tarball; the source condition is private to this repository', () => {
    expect(packed.map((p) => p.name).sort()).toEqual([...new Set(packed.map((p) => p.name))].sort());
    for (const p of packed) {
      const json = manifestOf(p);
      const inTarball = (path: string, what: string) => expect(p.files, `${p.name}: ${what} ${path}`).toContain(path.replace(/^\.\//, ''));
      inTarball(json.main, 'main');
      inTarball(json.types, 'types');
      for (const [subpath, conditions] of Object.entries(json.exports as Record<string, Record<string, string>>)) {
        expect(Object.keys(conditions), `${p.name} exports ${subpath}`).toEqual(['@transformaly/source', 'types', 'default']);
        expect(conditions.types, `${p.name} exports ${subpath}`).toMatch(/^\.\/dist\/.*\.d\.ts$/);
        expect(conditions.default, `${p.name} exports ${subpath}`).toMatch(/^\.\/dist\/.*\.js$/);
        for (const [condition, path] of Object.entries(conditions)) inTarball(path, `exports["${subpath}"].${condition}`);
      }
      for (const path of Object.values((json.bin ?? {}) as Record<string, string>)) inTarball(path, 'bin');
      inTarball('README.md', 'the README');
      // Tests, installed modules and build state stay home (the CLI's plugin templates carry tests of their own).
      expect(p.files.filter((f) => /^(test|node_modules)\/|\/node_modules\//.test(f) || f.endsWith('.tsbuildinfo')), p.name).toEqual([]);
    }
  });

  it('declare every package their built code imports, share one version, and pin each other to it', () => {
    const version = packed[0].version;
    for (const p of packed) {
      const json = manifestOf(p);
      expect(json.version, p.name).toBe(version);
      expect(json.engines?.node, p.name).toBe(rootPackage.engines.node);
      const declared = new Set(['dependencies', 'peerDependencies', 'optionalDependencies'].flatMap((k) => Object.keys(json[k] ?? {})));
      for (const [dep, range] of Object.entries({ ...json.dependencies, ...json.peerDependencies } as Record<string, string>)) {
        if (dep.startsWith('@transformaly/') || dep === 'transformaly') expect(range, `${p.name} -> ${dep}`).toBe(version);
      }
      for (const file of p.files.filter((f) => f.startsWith('dist/') && f.endsWith('.js'))) {
        const code = readFileSync(join(repo, p.folder, file), 'utf8');
        const specifiers = [...code.matchAll(/^\s*(?:import|export)\b[^'"]*?\bfrom\s*['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s*['"]([^'"]+)['"]/gm)].map(
          (m) => m[1] ?? m[2] ?? m[3],
        );
        for (const specifier of specifiers) {
          if (specifier.startsWith('.') || specifier.startsWith('node:') || builtinModules.includes(specifier)) continue;
          const pkg = specifier.split('/').slice(0, specifier.startsWith('@') ? 2 : 1).join('/');
          expect(declared, `${p.name}: ${file} imports ${specifier}`).toContain(pkg);
        }
      }
    }
    // The typed plugin form needs no inversify: only the core, which owns the container, depends on it.
    expect(packed.filter((p) => 'inversify' in (manifestOf(p).dependencies ?? {})).map((p) => p.name)).toEqual(['@transformaly/core']);
  });
});

// Each step of the quick start is run once, by whichever test needs it first, so that every test passes alone too.
let scaffold: ReturnType<typeof sh> | undefined;
function scaffolded() {
  // create-plugin, then `npm test` in the plugin's folder: it builds (tsc) and runs the plugin's tests with node:test.
  scaffold ??= quickStart('scaffold');
  return scaffold;
}

let ran: ReturnType<typeof sh> | undefined;
function theRun() {
  if (!ran) {
    expect(scaffolded().code).toBe(0);
    writeFileSync(join(project, 'quick-start.config.ts'), docBlock(QUICK_START, 'quick-start', 'config').code);
    writeFileSync(join(project, 'transformaly.config.ts'), CONFIG);
    ran = quickStart('run');
    expect(ran.code, ran.stderr).toBe(0);
  }
  return ran;
}

const RUN_DIR = join(project, 'results', 'first');
const DETECTOR = join(RUN_DIR, 'cases', 'folder_normal', 'detector');

let moved: ReturnType<typeof sh> | undefined;
function theMove() {
  theRun();
  // The plugin's folder moves (mv my-scorer plugins/), then `score` gets it with --plugin.
  moved ??= quickStart('moved');
  return moved;
}

/** The run's pre-trained scores by image path, relative to the project. */
const runScores = () => scoresByPath(readFileSync(join(RUN_DIR, 'scores.csv'), 'utf8'));

describe('outside the repository, the quick start of docs/Reference/Plugins.md', () => {
  it('the installed CLI scaffolds a plugin that imports only the core, builds, and passes the conformance kit', () => {
    const test = scaffolded();
    expect(test.code, `${test.stdout}\n${test.stderr}`).toBe(0);
    expect(test.stdout).toContain(`created ${PLUGIN}, a density scorer plugin, in my-scorer/`);
    expect(test.stdout).toMatch(/^ok \d+ - conformance: state-round-trip: /m);
    // Every rule of the kit, and the test of the values by hand arithmetic.
    expect(test.stdout).toMatch(new RegExp(`^# pass ${densityScorerChecks({ name: 'any', version: '0' }).length + 1}$`, 'm'));
    expect(test.stdout).toMatch(/^# fail 0$/m);
    const folder = existsSync(join(project, 'my-scorer')) ? join(project, 'my-scorer') : join(project, 'plugins', 'my-scorer');
    const source = readFileSync(join(folder, 'src', 'index.ts'), 'utf8');
    expect(new Set([...source.matchAll(/from '([^']+)'/g)].map((m) => m[1]))).toEqual(new Set(['@transformaly/core']));
  });

  it('lists the plugin the config names, with its options, and runs it from a config that imports @transformaly/core', () => {
    const { stdout } = theRun();
    expect(stdout).toMatch(/^\.\/my-scorer\/src\/index\.ts {2}\(transformaly-plugin-my-scorer 0\.1\.0; also my-scorer\)$/m);
    expect(stdout).toMatch(/^ {4}varianceFloor\?: number \(>= 0\) {2}- default 0\.000001; added to every variance/m);
    const results = JSON.parse(readFileSync(join(RUN_DIR, 'results.json'), 'utf8'));
    expect(results.cases.map((c: { caseId: string }) => c.caseId)).toEqual(['folder/normal']);
    const manifest = JSON.parse(readFileSync(join(DETECTOR, 'manifest.json'), 'utf8'));
    expect(manifest.plugins['scorers.pretrained']).toMatchObject({ name: PLUGIN, version: '0.1.0', source: 'file', path: join(project, 'my-scorer', 'src', 'index.ts') });
    expect(runScores().size).toBe(12);
  });

  it('scores with the saved detector after the plugin folder moved, given with --plugin; without it, names the plugin', () => {
    const score = theMove();
    expect(score.code, score.stderr).toBe(0);
    expect(scoresByPath(readFileSync(join(project, 'scores.csv'), 'utf8'))).toEqual(runScores());

    const missing = sh('npx', ['transformaly', 'score', '-d', DETECTOR, 'images/test']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`scorers.pretrained plugin "${PLUGIN}" version 0.1.0 was loaded from the file ${join(project, 'my-scorer', 'src', 'index.ts')}`);
    expect(missing.stderr).toContain(`give it with --plugin ${PLUGIN}=PATH`);
    expect(missing.stderr).not.toMatch(/npm install/);
  });

  it('runs the plugin in a program: createPipeline with the plugin given in code, openDetector with the saved detector', () => {
    expect(theMove().code).toBe(0);
    writeFileSync(join(project, 'program.mjs'), PROGRAM);
    const result = sh(process.execPath, ['program.mjs']);
    expect(result.code, result.stderr).toBe(0);
    const { fitted, opened } = JSON.parse(result.stdout) as Record<'fitted' | 'opened', Record<string, number>>;
    // The same case fitted in code gives the run's scores; so does the run's detector, opened in code.
    expect(new Map(Object.entries(fitted))).toEqual(runScores());
    expect(new Map(Object.entries(opened))).toEqual(runScores());
  });

  it('packs the plugin for publishing: its build, package.json and README, no tests', () => {
    expect(theMove().code).toBe(0);
    const pack = sh('npm', ['pack', '--dry-run', '--json'], join(project, 'plugins', 'my-scorer'));
    expect(pack.code, pack.stderr).toBe(0);
    const [{ name, files }] = JSON.parse(pack.stdout) as { name: string; files: { path: string }[] }[];
    expect(name).toBe(PLUGIN);
    expect(files.map((f) => f.path).filter((f) => !f.startsWith('dist/src/')).sort()).toEqual(['README.md', 'package.json']);
    expect(files.map((f) => f.path)).toContain('dist/src/index.js');
    expect(files.map((f) => f.path)).toContain('dist/src/index.d.ts');
  });
});

/** The pre-trained scores of a scores CSV (`run`'s or `score`'s) by image path, relative to the project. */
function scoresByPath(csv: string): Map<string, number> {
  const [header, ...rows] = parseCsv(csv).filter((r) => r.length > 1);
  const path = header.indexOf('path');
  const score = header.indexOf('pretrained');
  return new Map(rows.map((r) => [relative(project, resolve(project, r[path])), Number(r[score])]));
}

const TINY_VIT = { random: { seed: 3, arch: { imageSize: [28, 28], patchSize: 7, width: 32, depth: 2, heads: 2, mlpDim: 64, layerNormEps: 1e-6, qkvBias: true } } };
const TINY = { backbone: { use: 'vit', options: TINY_VIT }, runtime: { use: 'onnx', options: { threads: 1 } }, distiller: false, batchSize: 16 };

// The quick start's config with a tiny untrained backbone in place of the default ViT-B/16, which no hub serves here.
const CONFIG = `import quickStart from './quick-start.config.ts';

export default { ...quickStart, ...${JSON.stringify(TINY)} };
`;

// A program of the user's: the plugin imported as a module and given to createPipeline under a name of the program's.
const PROGRAM = `import { relative } from 'node:path';
import { createPipeline, openDetector, SilentProgress } from '@transformaly/core';
import plugin from './plugins/my-scorer/dist/src/index.js';

const here = import.meta.dirname;
const byPath = (scores) => Object.fromEntries(scores.ids.map((id, i) => [relative(here, id), scores.pretrained[i]]));
const progress = new SilentProgress();
const config = ${JSON.stringify({
  ...TINY,
  data: { use: 'normal-abnormal', options: { train: './images/train', test: './images/test' } },
  scorers: { pretrained: { use: 'mine', options: { varianceFloor: 1e-6 } } },
})};
const pipeline = await createPipeline(config, { plugins: { mine: plugin }, baseDir: here, progress });
const [only] = await pipeline.cases();
const detector = await pipeline.createDetector();
await detector.fit(only.train);
const fitted = byPath(await detector.score(only.test.map((t) => t.item)));
await detector.dispose();
await pipeline.dispose();

const saved = await openDetector('${DETECTOR}', { plugins: { [plugin.name]: plugin }, progress });
const opened = byPath(await saved.detector.score(only.test.map((t) => t.item)));
await saved.dispose();
process.stdout.write(JSON.stringify({ fitted, opened }));
`;
