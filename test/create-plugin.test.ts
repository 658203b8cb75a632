// `transformaly create-plugin <kind> <name>`: every kind's package passes its own tests as generated (the conformance
// kit and tests of its values), with the workspace packages linked in place of an installation (test/packages.test.ts
// installs the packed ones); the names, the folder it may write, and the versions it asks for.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backboneChecks, combinerChecks, densityScorerChecks, imageSourceChecks, runtimeChecks } from '@transformaly/testing';
import { BUILD_DEPENDENCIES, PLUGIN_KINDS, pluginNames } from 'transformaly';
import { linkWorkspace, repo } from './fixtures/packages.js';

const bin = join(repo, 'cli', 'bin', 'transformaly.js');
const work = mkdtempSync(join(tmpdir(), 'transformaly-create-plugin-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function cli(args: string[], cwd = work) {
  const result = spawnSync(process.execPath, [bin, ...args], { cwd, encoding: 'utf8', env: { ...process.env, DEBUG: '' } });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** `npm test` in a generated package, as its author runs it. */
function npmTest(dir: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn('npm', ['test'], { cwd: dir, env: { ...process.env, DEBUG: '' } });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => void (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => void (output += chunk.toString()));
    child.on('close', (code) => resolve({ code, output }));
  });
}

beforeAll(() => {
  if (!existsSync(join(repo, 'cli', 'dist', 'main.js'))) throw new Error('cli/dist is missing: run "npx tsc -b" (npm test does it first)');
  // Above the generated packages: what `npm install` puts in each (the core is a peer dependency, the kit and the
  // compiler dev dependencies; the backbone and the runtime have dependencies of their own).
  linkWorkspace(work, ['@transformaly/core', '@transformaly/testing', '@transformaly/backbone-vit', 'onnxruntime-node', 'typescript', '@types/node']);
});

describe('create-plugin', () => {
  it('writes, for every kind, a package whose tests pass as generated: the conformance kit and tests of its values', async () => {
    for (const kind of PLUGIN_KINDS) {
      const made = cli(['create-plugin', kind, `my-${kind}`]);
      expect(made.code, made.stderr).toBe(0);
      // The kit is installed above the new folder (linked here), so its tests need no install of their own.
      expect(made.stdout).toContain(`\nnext:\n  cd my-${kind}\n  npm test\n`);
      expect(readdirSync(join(work, `my-${kind}`)).sort()).toEqual(['.gitignore', '.npmrc', 'README.md', 'package.json', 'src', 'test', 'tsconfig.json']);
    }
    // Side by side: each is a build and a test run of its own.
    const runs = await Promise.all(PLUGIN_KINDS.map((kind) => npmTest(join(work, `my-${kind}`))));
    // As many conformance tests as the kit has rules for the kind (any plugin object lists them).
    const any = { name: 'any', version: '0', stages: {} };
    const conformance = {
      scorer: densityScorerChecks(any).length,
      combiner: combinerChecks(any).length,
      backbone: backboneChecks(any).length,
      runtime: runtimeChecks(any).length,
      data: imageSourceChecks(any).length,
    };
    PLUGIN_KINDS.forEach((kind, i) => {
      const { code, output } = runs[i];
      expect(code, `${kind}:\n${output}`).toBe(0);
      expect(output.match(/^ok \d+ - conformance: /gm), `${kind}:\n${output}`).toHaveLength(conformance[kind]);
      // Beyond the kit, each checks its values (hand arithmetic, a reference model, known pixels).
      expect(Number(/^# pass (\d+)$/m.exec(output)?.[1]), kind).toBeGreaterThan(conformance[kind]);
      expect(output, kind).toMatch(/^# fail 0$/m);
    });
  });

  it("a generated test fails when the plugin breaks: the scorer's scores turned upside down", async () => {
    expect(cli(['create-plugin', 'scorer', 'upside-down']).code).toBe(0);
    const file = join(work, 'upside-down', 'src', 'index.ts');
    const source = readFileSync(file, 'utf8');
    expect(source).toContain('scores[i] = -0.5 * (constant + distance);');
    writeFileSync(file, source.replace('scores[i] = -0.5 * (constant + distance);', 'scores[i] = 0.5 * (constant + distance);'));
    const { code, output } = await npmTest(join(work, 'upside-down'));
    expect(code).not.toBe(0);
    expect(output).toMatch(/^not ok \d+ - conformance: normality-orientation: /m);
    expect(output).toMatch(/^not ok \d+ - the score is the log-likelihood under the per-feature means and variances$/m);
  });

  it('names the package so that the core finds it installed, and its alias after the prefix', () => {
    expect(pluginNames('my-scorer')).toEqual({ packageName: 'transformaly-plugin-my-scorer', alias: 'my-scorer' });
    expect(pluginNames('transformaly-plugin-knn2')).toEqual({ packageName: 'transformaly-plugin-knn2', alias: 'knn2' });
    expect(pluginNames('@acme/cosine-knn')).toEqual({ packageName: '@acme/transformaly-plugin-cosine-knn', alias: 'cosine-knn' });
    expect(() => pluginNames('My Scorer')).toThrow('create-plugin: "My Scorer" is not an npm package name (lowercase letters, digits, "-", "." and "_", optionally @scope/name)');
    const json = JSON.parse(readFileSync(join(work, 'my-scorer', 'package.json'), 'utf8'));
    expect(json.name).toBe('transformaly-plugin-my-scorer');
    expect(json.transformaly).toEqual({ aliases: ['my-scorer'] });
  });

  it('asks for the versions this repository builds with: its own packages, the compiler, onnxruntime', () => {
    const version = JSON.parse(readFileSync(join(repo, 'cli', 'package.json'), 'utf8')).version;
    const root = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8'));
    expect(BUILD_DEPENDENCIES).toEqual({ typescript: root.devDependencies.typescript, '@types/node': root.devDependencies['@types/node'] });
    const scorer = JSON.parse(readFileSync(join(work, 'my-scorer', 'package.json'), 'utf8'));
    expect(scorer.peerDependencies).toEqual({ '@transformaly/core': `^${version}` });
    expect(scorer.devDependencies).toEqual({ '@transformaly/testing': `^${version}`, ...BUILD_DEPENDENCIES });
    expect(scorer.dependencies).toBeUndefined();
    expect(scorer.engines).toEqual(root.engines);
    const runtime = JSON.parse(readFileSync(join(work, 'my-runtime', 'package.json'), 'utf8'));
    const onnx = JSON.parse(readFileSync(join(repo, 'plugins', 'runtime-onnx', 'package.json'), 'utf8'));
    expect(runtime.dependencies).toEqual({ 'onnxruntime-node': onnx.dependencies['onnxruntime-node'] });
    const backbone = JSON.parse(readFileSync(join(work, 'my-backbone', 'package.json'), 'utf8'));
    expect(backbone.dependencies).toEqual({ '@transformaly/backbone-vit': `^${version}` });
  });

  it('writes only the folder it names, and never into one that holds anything', () => {
    const folder = join(work, 'taken');
    mkdirSync(folder);
    writeFileSync(join(folder, 'notes.txt'), 'mine');
    const refused = cli(['create-plugin', 'combiner', 'taken']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe(`transformaly: create-plugin: ${folder} already exists and is not empty; choose another name or --dir\n`);
    expect(readdirSync(folder)).toEqual(['notes.txt']);

    const elsewhere = cli(['create-plugin', 'combiner', 'taken', '--dir', 'plugins/weights']);
    expect(elsewhere.code, elsewhere.stderr).toBe(0);
    expect(elsewhere.stdout).toContain('created transformaly-plugin-taken, a feature combiner plugin, in plugins/weights/:');

    // Where no kit is installed above it, the plugin installs its own packages first.
    const alone = mkdtempSync(join(tmpdir(), 'transformaly-alone-'));
    try {
      const made = cli(['create-plugin', 'data', 'listing'], alone);
      expect(made.code, made.stderr).toBe(0);
      expect(made.stdout).toContain('\nnext:\n  cd listing\n  npm install\n  npm test\n');
    } finally {
      rmSync(alone, { recursive: true, force: true });
    }
    expect(readdirSync(join(work, 'plugins'))).toEqual(['weights']);

    const unknown = cli(['create-plugin', 'distiller', 'mine']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("error: command-argument value 'distiller' is invalid for argument 'kind'. Allowed choices are scorer, combiner, backbone, runtime, data.");
    expect(existsSync(join(work, 'mine'))).toBe(false);
  });
});
