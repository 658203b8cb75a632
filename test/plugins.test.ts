import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import {
  BUILTIN_PLUGINS,
  ConfigError,
  ContractError,
  createPipeline,
  distillerOptionsSchema,
  loadPlugin,
  PluginError,
  stageOwner,
  type ImageItem,
  type Pipeline,
  type ProgressReporter,
  type RgbImage,
  type Runtime,
  type TransformalyConfig,
  type TransformalyPlugin,
} from '@transformaly/core';
import { OnnxRuntime } from '@transformaly/runtime-onnx';
import { pluginsReport } from 'transformaly';

// Plugin files live inside the repo so that their imports (inversify, @transformaly/core) resolve as they would in a
// user's project; they are written by the test so that each case is readable here.
const dir = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'plugins');
mkdirSync(dir, { recursive: true });
const write = (name: string, text: string) => {
  writeFileSync(join(dir, name), text);
  return `./${name}`;
};
const scratch: string[] = [];
const pipelines: Pipeline[] = [];
afterAll(async () => {
  for (const p of pipelines) await p.dispose();
  for (const folder of scratch) rmSync(folder, { recursive: true, force: true });
});
const pipelineOf = async (config: TransformalyConfig, options: Parameters<typeof createPipeline>[1]) => {
  const p = await createPipeline(config, options);
  pipelines.push(p);
  return p;
};

// A third-party scorer in the typed form, in TypeScript, loaded by file path: minus the distance to the training
// mean, times `scale`. It imports nothing: the typed form needs neither inversify nor the core at run time.
const MEAN_SCORER = `class MeanDistanceScorer {
  readonly name = 'mean-distance';
  private mean: Float64Array | undefined;
  constructor(private readonly scale: number) {}
  fit(X: { rows: number; cols: number; data: Float64Array | Float32Array }): void {
    const mean = new Float64Array(X.cols);
    for (let i = 0; i < X.rows; i++) for (let j = 0; j < X.cols; j++) mean[j] += X.data[i * X.cols + j] / X.rows;
    this.mean = mean;
  }
  scoreSamples(Y: { rows: number; cols: number; data: Float64Array | Float32Array }): Float64Array {
    if (!this.mean) throw new Error('mean-distance: not fitted');
    const out = new Float64Array(Y.rows);
    for (let i = 0; i < Y.rows; i++) {
      let s = 0;
      for (let j = 0; j < Y.cols; j++) s += (Y.data[i * Y.cols + j] - this.mean[j]) ** 2;
      out[i] = -this.scale * Math.sqrt(s);
    }
    return BROKEN_RETURN;
  }
  exportState() {
    if (!this.mean) throw new Error('mean-distance: not fitted');
    return { meta: { scale: this.scale }, arrays: { mean: { dims: [this.mean.length], data: this.mean.slice() } } };
  }
  importState(state: { arrays: Record<string, { data: Float64Array }> }): void { this.mean = Float64Array.from(state.arrays.mean.data); }
}
`;

const meanScorer = write(
  'mean-scorer.ts',
  `${MEAN_SCORER.replace('BROKEN_RETURN', 'out')}
export default {
  name: 'mean-distance-scorer',
  version: '2.1.0',
  aliases: ['mean-distance'],
  stages: {
    scorer: {
      optionsSchema: { type: 'object', properties: { scale: { type: 'number', exclusiveMinimum: 0 } } },
      create: (options: { scale?: number }) => new MeanDistanceScorer(options.scale ?? 1),
    },
  },
};
`,
);

// The same scorer in the advanced form: a ContainerModule that binds the token itself.
const advancedScorer = write(
  'advanced-scorer.ts',
  `import { ContainerModule } from 'inversify';
import { TOKENS } from '@transformaly/core';
${MEAN_SCORER.replace('BROKEN_RETURN', 'out')}
export default {
  name: 'advanced-mean-distance',
  version: '1.0.0',
  optionsSchema: { type: 'object', properties: { scale: { type: 'number' } } },
  register: (options: { scale?: number }) =>
    new ContainerModule(({ bind }) => {
      bind(TOKENS.DensityScorer).toDynamicValue(() => new MeanDistanceScorer(options.scale ?? 1)).inTransientScope();
    }),
};
`,
);

// A tiny untrained ViT and images made in memory: a detector fits in well under a second.
const tinyVit = { use: 'vit', options: { random: { seed: 5, arch: { imageSize: [16, 16], patchSize: 8, width: 8, depth: 1, heads: 2, mlpDim: 16 } } } };
const base: TransformalyConfig = {
  data: { use: 'folder', options: { root: './images' } },
  backbone: tinyVit,
  runtime: { use: 'onnx', options: { threads: 1 } },
  distiller: false,
};

function images(n: number, seed: number): ImageItem[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `img-${seed}-${i}`,
    label: 'normal',
    load: async (): Promise<RgbImage> => {
      const data = new Float32Array(16 * 16 * 3);
      for (let p = 0; p < data.length; p++) data[p] = (Math.sin(p * 0.37 + i * 1.3 + seed) + 1) / 2;
      return { width: 16, height: 16, data };
    },
  }));
}

function recorder(): ProgressReporter & { infos: string[]; warnings: string[] } {
  const infos: string[] = [];
  const warnings: string[] = [];
  return { task: () => ({ tick() {}, done() {} }), info: (m) => void infos.push(m), warn: (m) => void warnings.push(m), infos, warnings };
}

describe('plugin loading', () => {
  it('loads a typed TypeScript plugin by file path and validates its options with its own schema', async () => {
    const plugin = await loadPlugin(meanScorer, { baseDir: dir });
    expect(plugin).toMatchObject({ name: 'mean-distance-scorer', version: '2.1.0' });
    const pipeline = await pipelineOf({ ...base, scorers: { pretrained: { use: meanScorer, options: { scale: 2 } } } }, { baseDir: dir });
    expect(pipeline.config.scorers.pretrained.options).toEqual({ scale: 2 });
    // Made absolute, so that a detector saved with this config can be scored from any folder.
    expect(pipeline.config.scorers.pretrained.use).toBe(join(dir, 'mean-scorer.ts'));
    // Its name and version are recorded with results.
    const versions = await pipeline.packageVersions();
    expect(versions).toMatchObject({ 'mean-distance-scorer': '2.1.0', '@transformaly/backbone-vit': expect.any(String), sharp: expect.any(String) });
    // Built-in stages are the core's: recorded as the core, not under their short names.
    expect(versions.folder).toBeUndefined();
    const error = await createPipeline({ ...base, scorers: { pretrained: { use: meanScorer, options: { scale: -1, sharpness: 1 } } } }, { baseDir: dir }).catch((e) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toMatch(/2 problems/);
    expect(error.message).toMatch(/scorers\.pretrained\.options\.scale: found -1, expected a value that must be > 0/);
    expect(error.message).toMatch(/scorers\.pretrained\.options\.sharpness: found 1, expected no such key \(unknown key; allowed: scale\)/);
  });

  it('gives a typed per-detector stage a new instance for every detector and feature space, and the numeric engine', async () => {
    const pipeline = await pipelineOf({ ...base, scorers: { pretrained: meanScorer } }, { baseDir: dir });
    const a = await pipeline.createDetector();
    const b = await pipeline.createDetector();
    expect(a.parts.scorers.pretrained).not.toBe(b.parts.scorers.pretrained);
    expect(stageOwner(a.parts.scorers.pretrained)).toEqual({ plugin: 'mean-distance-scorer', version: '2.1.0', slot: 'scorers.pretrained' });
    await a.fit(images(6, 1));
    await expect(b.score(images(2, 2))).rejects.toThrow(/not fitted/);
  });

  it('binds the advanced ContainerModule form with its own scopes', async () => {
    const pipeline = await pipelineOf({ ...base, scorers: { pretrained: { use: advancedScorer, options: { scale: 3 } } } }, { baseDir: dir });
    const detector = await pipeline.createDetector();
    await detector.fit(images(6, 1));
    const scores = await detector.score(images(2, 2));
    expect(scores.pretrained[0]).toBeLessThan(0);
  });

  it('loads first-party plugins by the aliases their packages declare, and by package name', async () => {
    expect((await loadPlugin('gaussian', { baseDir: dir })).name).toBe('@transformaly/scorer-gaussian');
    expect((await loadPlugin('@transformaly/scorer-knn', { baseDir: dir })).name).toBe('@transformaly/scorer-knn');
    expect(BUILTIN_PLUGINS.get('folder')?.name).toBe('folder');
    const tfjs = await loadPlugin('tfjs', { baseDir: dir });
    expect(tfjs.name).toBe('@transformaly/runtime-tfjs');
    // The same package's distiller stage: the built-in distiller's options, plus those of the tfjs runtime that trains
    // the students.
    expect(await loadPlugin('transformaly-tfjs', { baseDir: dir })).toBe(tfjs);
    expect(Object.keys(tfjs.stages!.distiller!.optionsSchema!.properties as object).sort()).toEqual(
      [...Object.keys(distillerOptionsSchema.properties as object), 'tfjs'].sort(),
    );
    // Each carries its package's version, read from its package.json.
    const pkg = JSON.parse(readFileSync(new URL('../plugins/scorer-gmm/package.json', import.meta.url), 'utf8'));
    expect(await loadPlugin('gmm', { baseDir: dir })).toMatchObject({ name: pkg.name, version: pkg.version, aliases: pkg.transformaly.aliases });
  });

  it('finds a third-party package that declares an alias in its package.json, with no change to the core', async () => {
    const project = mkdtempSync(join(tmpdir(), 'transformaly-project-'));
    scratch.push(project);
    const pkgDir = join(project, 'node_modules', 'transformaly-plugin-mean');
    mkdirSync(pkgDir, { recursive: true });
    writeFileSync(join(pkgDir, 'package.json'), JSON.stringify({ name: 'transformaly-plugin-mean', version: '0.3.0', type: 'module', main: 'index.js', transformaly: { aliases: ['mean'] } }));
    // Plain JavaScript that imports nothing, and no version in the object: the loader takes the package's.
    writeFileSync(
      join(pkgDir, 'index.js'),
      `class MeanScorer {
  name = 'mean';
  fit(X) { this.mean = new Float64Array(X.cols); for (let i = 0; i < X.data.length; i++) this.mean[i % X.cols] += X.data[i] / X.rows; }
  scoreSamples(Y) {
    if (!this.mean) throw new Error('mean: not fitted');
    return Float64Array.from({ length: Y.rows }, (_, i) => -Math.hypot(...Array.from(this.mean, (m, j) => Y.data[i * Y.cols + j] - m)));
  }
  exportState() { return { meta: {}, arrays: { mean: { dims: [this.mean.length], data: this.mean.slice() } } }; }
  importState(state) { this.mean = Float64Array.from(state.arrays.mean.data); }
}
export default { name: 'transformaly-plugin-mean', stages: { scorer: { create: () => new MeanScorer() } } };
`,
    );
    const plugin = await loadPlugin('mean', { baseDir: project });
    expect(plugin).toMatchObject({ name: 'transformaly-plugin-mean', version: '0.3.0' });
    const pipeline = await pipelineOf({ ...base, scorers: { pretrained: 'mean' } }, { baseDir: project });
    const detector = await pipeline.createDetector();
    await detector.fit(images(6, 1));
    expect((await detector.score(images(2, 2))).pretrained).toHaveLength(2);

    // Two installed packages claiming one alias: the loader names both instead of guessing.
    const other = join(project, 'node_modules', '@acme', 'transformaly-plugin-mean2');
    mkdirSync(other, { recursive: true });
    writeFileSync(join(other, 'package.json'), JSON.stringify({ name: '@acme/transformaly-plugin-mean2', version: '1.0.0', transformaly: { aliases: ['mean'] } }));
    await expect(loadPlugin('mean', { baseDir: project })).rejects.toThrow(/alias is declared by several installed packages \(@acme\/transformaly-plugin-mean2, transformaly-plugin-mean\); name the package instead/);
  });

  it("makes the aliases of the config's `plugins` usable in its stages", async () => {
    const pipeline = await pipelineOf({ ...base, plugins: [meanScorer], scorers: { pretrained: 'mean-distance' } }, { baseDir: dir });
    // Recorded as loaded from its file, as a saved detector needs to find it again.
    expect(pipeline.plugins['scorers.pretrained']).toMatchObject({ name: 'mean-distance-scorer', version: '2.1.0', source: 'file', path: join(dir, 'mean-scorer.ts') });
  });

  it('suggests the closest known names for an unknown one, never `npm install` of the typo', async () => {
    const error = await loadPlugin('gausian', { baseDir: dir }).catch((e) => e);
    expect(error).toBeInstanceOf(PluginError);
    expect(error.message).toMatch(/no built-in, alias or installed package is named "gausian" .*did you mean "gaussian"\?/);
    expect(error.message).toMatch(/A plugin file is named by its path, e\.g\. "\.\/my-plugin\.ts"/);
    expect(error.message).not.toMatch(/npm install/);
    expect((await loadPlugin('zscroe', { baseDir: dir, builtins: BUILTIN_PLUGINS }).catch((e) => e)).message).toMatch(/did you mean "zscore"\?/);
  });

  it('names a missing file', async () => {
    await expect(loadPlugin('./nope.ts', { baseDir: dir })).rejects.toThrow(/plugin "\.\/nope\.ts": file .*nope\.ts does not exist/);
  });

  it('names a plugin that throws while loading, and the cause', async () => {
    const ref = write('throws.ts', `throw new Error('licence key missing');\nexport default {};\n`);
    const error = await loadPlugin(ref, { baseDir: dir }).catch((e) => e);
    expect(error).toBeInstanceOf(PluginError);
    expect(error.message).toMatch(/plugin "\.\/throws\.ts": .*throws\.ts threw while loading: licence key missing/);
  });

  it('names a module that exports no plugin, and each rule a plugin object breaks', async () => {
    const ref = write('not-a-plugin.mjs', `export const answer = 42;\n`);
    await expect(loadPlugin(ref, { baseDir: dir })).rejects.toThrow(/exports no plugin: expected a default \(or "plugin"\) export \{ name, version, stages/);
    const bad = write('bad-shape.ts', `export default { name: 'bad', stages: { scorer: { create: 1 }, scorers: {} } };\n`);
    await expect(loadPlugin(bad, { baseDir: dir })).rejects.toThrow(
      /breaks the plugin contract: "version" must be a string .*; stages\.scorer\.create must be a function .*; stages\.scorers: unknown kind of stage/,
    );
  });

  it('refuses a plugin that provides nothing', async () => {
    const ref = write('empty.ts', `import { ContainerModule } from 'inversify';\nexport default { name: 'empty', version: '1.0.0', register: () => new ContainerModule(() => {}) };\n`);
    const error = await createPipeline({ ...base, scorers: { pretrained: ref } }, { baseDir: dir }).catch((e) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toMatch(/scorers\.pretrained\.use: found "\.\/empty\.ts", expected a plugin that provides a density scorer, but "empty" provides nothing/);
    const extra = await createPipeline({ ...base, plugins: [ref] }, { baseDir: dir }).catch((e) => e);
    expect(extra.message).toMatch(/plugins\[0\]: .*provides nothing/);
  });

  it('refuses a typed plugin in a slot of a kind it does not declare', async () => {
    const error = await createPipeline({ ...base, combiner: meanScorer }, { baseDir: dir }).catch((e) => e);
    expect(error.message).toMatch(/combiner\.use: found "\.\/mean-scorer\.ts", expected a plugin that provides a feature combiner, but "mean-distance-scorer" provides a density scorer/);
  });

  it('names a plugin whose options schema is not a valid schema', async () => {
    const ref = write(
      'typo-schema.ts',
      `export default { name: 'typo', version: '1.0.0', stages: { combiner: { optionsSchema: { type: 'object', properties: { k: { type: 'integer', minimun: 1 } } }, create: () => ({}) } } };\n`,
    );
    await expect(createPipeline({ ...base, combiner: ref }, { baseDir: dir })).rejects.toThrow(
      /combiner\.use: .*a plugin whose optionsSchema is a valid JSON schema \("typo": .*minimun/,
    );
  });

  it('names a plugin whose register() throws', async () => {
    const ref = write('bad-register.ts', `export default { name: 'bad', version: '1.0.0', register: () => { throw new Error('no GPU'); } };\n`);
    await expect(createPipeline({ ...base, combiner: ref }, { baseDir: dir })).rejects.toThrow(/combiner\.use: .*plugin "bad": register\(\) threw: no GPU/);
  });

  it('explains an inversify 6 style module and a register() that returns no ContainerModule', async () => {
    const v6 = write(
      'inversify6.ts',
      `import { ContainerModule } from 'inversify';\nimport { TOKENS } from '@transformaly/core';\nexport default { name: 'old', version: '1.0.0', register: () => new ContainerModule(((bind: any) => { bind(TOKENS.FeatureCombiner).toConstantValue({}); }) as any) };\n`,
    );
    await expect(createPipeline({ ...base, combiner: v6 }, { baseDir: dir })).rejects.toThrow(
      /plugin "old": its bindings failed to load: .*bind is not a function \(the ContainerModule callback takes inversify 6 arguments \(bind, unbind, \.\.\.\); inversify 8 passes one object: new ContainerModule\(\(\{ bind \}\) => \.\.\.\)/,
    );
    const plain = write('no-module.ts', `export default { name: 'plain', version: '1.0.0', register: () => ({ registry: () => {} }) };\n`);
    await expect(createPipeline({ ...base, combiner: plain }, { baseDir: dir })).rejects.toThrow(
      /plugin "plain": register\(\) must return an inversify 8 ContainerModule, but returned an inversify 6 ContainerModule \(it has registry\(\), not load\(\)\)\. .*or use the typed form/,
    );
  });
});

describe('stage contracts, checked when the core gets an instance', () => {
  const broken = (name: string, body: string) =>
    write(`${name}.ts`, `${MEAN_SCORER.replace('BROKEN_RETURN', 'out')}\n${body}\nexport default { name: '${name}', version: '1.0.0', stages: { scorer: { create: () => make() } } };\n`);

  it('names the plugin and its stage when its factory throws', async () => {
    const ref = broken('throwing-factory', `function make(): never { throw new Error('licence expired'); }`);
    const pipeline = await pipelineOf({ ...base, scorers: { pretrained: ref } }, { baseDir: dir });
    await expect(pipeline.createDetector()).rejects.toThrow(/plugin "throwing-factory" \(scorers\.pretrained\): creating a density scorer failed: licence expired/);
  });

  it('refuses a scorer without exportState when the detector is composed, before anything is fitted', async () => {
    const ref = broken('no-export', `function make() { const s: any = new MeanDistanceScorer(1); s.exportState = undefined; return s; }`);
    const pipeline = await pipelineOf({ ...base, scorers: { pretrained: ref } }, { baseDir: dir });
    const error = await pipeline.createDetector().catch((e) => e);
    expect(error).toBeInstanceOf(ContractError);
    expect(error.message).toMatch(/plugin "no-export" \(scorers\.pretrained\): breaks the rule "DensityScorer implements fit, scoreSamples, exportState, importState": method exportState\(\) missing on a MeanDistanceScorer/);
  });

  it('blames the scorer, not the combiner, for scores that are not a Float64Array', async () => {
    const ref = write(
      'array-scorer.ts',
      `${MEAN_SCORER.replace('BROKEN_RETURN', 'Array.from(out) as any')}\nexport default { name: 'array-scorer', version: '1.0.0', stages: { scorer: { create: () => new MeanDistanceScorer(1) } } };\n`,
    );
    const pipeline = await pipelineOf({ ...base, scorers: { pretrained: ref } }, { baseDir: dir });
    const detector = await pipeline.createDetector();
    const error = await detector.fit(images(6, 1)).catch((e) => e);
    expect(error.message).toMatch(/^scorers\.pretrained plugin "array-scorer": scoreSamples returned Array; expected a Float64Array of \d+ scores/);
    expect(error.message).not.toMatch(/combiner/);
  });

  it('refuses an exported state that is no StageState, naming the broken part', async () => {
    const ref = broken('bad-state', `function make() { const s: any = new MeanDistanceScorer(1); s.exportState = () => ({ meta: {}, arrays: { mean: { dims: [3], data: [1, 2, 3] } } }); return s; }`);
    const pipeline = await pipelineOf({ ...base, scorers: { pretrained: ref } }, { baseDir: dir });
    const detector = await pipeline.createDetector();
    await detector.fit(images(6, 1));
    expect(() => detector.exportStates()).toThrow(/plugin "bad-state" \(scorers\.pretrained\): breaks the rule "DensityScorer\.exportState returns a StageState.*arrays\.mean\.data is an Array of 3 values/);
  });

  it('refuses an advanced-form scorer bound as a singleton: the second detector would share the first one', async () => {
    const ref = write(
      'singleton-scorer.ts',
      `import { ContainerModule } from 'inversify';\nimport { TOKENS } from '@transformaly/core';\n${MEAN_SCORER.replace('BROKEN_RETURN', 'out')}\nexport default { name: 'singleton', version: '1.0.0', register: () => new ContainerModule(({ bind }) => { bind(TOKENS.DensityScorer).toDynamicValue(() => new MeanDistanceScorer(1)).inSingletonScope(); }) };\n`,
    );
    const pipeline = await pipelineOf({ ...base, scorers: { pretrained: ref } }, { baseDir: dir });
    await pipeline.createDetector();
    await expect(pipeline.createDetector()).rejects.toThrow(
      /plugin "singleton" \(scorers\.pretrained\): breaks the rule "DensityScorer is a new instance for every detector and feature space": the same instance was handed out twice.*bind it \.inTransientScope\(\)/,
    );
  });
});

describe('numerics', () => {
  /** The onnx runtime plugin, wrapped to record what the pipeline asks of its numeric sessions. */
  function observedOnnx(log: string[]): TransformalyPlugin {
    return {
      name: 'observed-onnx',
      version: '1.0.0',
      stages: {
        runtime: {
          optionsSchema: { type: 'object', properties: { threads: { type: 'integer' } } },
          create: (options: { threads?: number }) => {
            const runtime = new OnnxRuntime({ threads: options.threads });
            return Object.assign(Object.create(runtime) as OnnxRuntime, {
              createNumericSession: async (graph: Uint8Array) => {
                const session = await runtime.createNumericSession(graph);
                log.push(`numeric session on ${runtime.threads} thread(s)`);
                return { run: session.run.bind(session), dispose: async () => (log.push('numeric session released'), session.dispose()) };
              },
              dispose: async () => (log.push('runtime disposed'), runtime.dispose()),
            });
          },
        },
      },
    };
  }

  it("run on the configured runtime, with its threads, and are released with the pipeline, before the runtime", async () => {
    const log: string[] = [];
    const pipeline = await createPipeline({ ...base, runtime: { use: 'observed-onnx', options: { threads: 2 } } }, { baseDir: dir, plugins: { 'observed-onnx': observedOnnx(log) } });
    const detector = await pipeline.createDetector();
    expect((await pipeline.numeric()).runtime).toBe('onnx');
    await detector.fit(images(6, 1));
    expect(log[0]).toBe('numeric session on 2 thread(s)');
    await pipeline.dispose();
    expect(log.filter((l) => l === 'numeric session released').length).toBe(log.filter((l) => l.startsWith('numeric session on')).length);
    expect(log.indexOf('runtime disposed')).toBeGreaterThan(log.lastIndexOf('numeric session released'));
  });

  it('of a pipeline on tfjs (no float64 kernels) run on the onnx runtime plugin, with as many threads, and it says so', async () => {
    const progress = recorder();
    const pipeline = await pipelineOf({ ...base, runtime: { use: 'tfjs', options: { backend: 'wasm' } } }, { baseDir: dir, progress });
    const runtime: Runtime = await pipeline.runtime();
    expect(runtime.createNumericSession).toBeUndefined();
    const engine = await pipeline.numeric();
    expect(engine.runtime).toBe('onnx');
    expect(progress.infos).toContain(`runtime "tfjs" has no float64 kernels: the scorers' numerics run on the "onnx" runtime (${runtime.threads} thread${runtime.threads === 1 ? '' : 's'})`);
    // float64 products: 0.1 * 0.2 + 0.3 * 0.4 exactly as JavaScript computes it.
    const product = await engine.matmul({ rows: 1, cols: 2, data: Float64Array.of(0.1, 0.3) }, { rows: 2, cols: 1, data: Float64Array.of(0.2, 0.4) });
    expect(product.data[0]).toBe(0.1 * 0.2 + 0.3 * 0.4);
    // Both runtimes are recorded with results, with the engines they run on.
    expect(await pipeline.packageVersions()).toMatchObject({
      '@transformaly/runtime-tfjs': expect.any(String),
      '@tensorflow/tfjs-core': expect.any(String),
      '@transformaly/runtime-onnx': expect.any(String),
      'onnxruntime-node': expect.any(String),
    });
  });
});

describe('pipeline disposal', () => {
  it('loads nothing it was not asked for: a pipeline whose backbone was never used disposes without loading it', async () => {
    // The checkpoint does not exist: loading it would throw, so a dispose that loaded it would fail.
    const pipeline = await createPipeline({ ...base, backbone: { use: 'vit', options: { checkpoint: './no-such-checkpoint' } } }, { baseDir: dir });
    await expect(pipeline.dispose()).resolves.toBeUndefined();
  });
});

describe('transformaly plugins', () => {
  it('lists each option with its type, limits and default, nested ones included', async () => {
    const text = await pluginsReport({ cwd: dir });
    expect(text).toMatch(/^Density scorers \(scorers\.pretrained, scorers\.finetuned\)$/m);
    expect(text).toMatch(/^gaussian {2}\(@transformaly\/scorer-gaussian \d+\.\d+\.\d+\)$/m);
    expect(text).toMatch(/^ {4}regularization\?: number \(>= 0\) {2}- default 0\.000001; added to the covariance diagonal$/m);
    expect(text).toMatch(/^ {4}whiten\?: one of: {2}- default false; PCA-whiten/m);
    expect(text).toMatch(/^ {8}varianceFraction: number \(> 0, <= 1\)$/m);
    expect(text).toMatch(/^ {4}k\?: integer \(>= 1\) {2}- default 2; neighbours averaged per query$/m);
    expect(text).toMatch(/^ {6}arch\?: one of:$/m);
    expect(text).toMatch(/^ {10}patchSize\?: integer \(>= 1\)$/m);
  });

  it("flags a plugin that provides nothing and a config's invalid options, and lists scorers named by a plain string", async () => {
    const project = mkdtempSync(join(dir, 'listing-'));
    scratch.push(project);
    writeFileSync(join(project, 'empty.ts'), `export default { name: 'nothing', version: '1.0.0', stages: {} };\n`);
    writeFileSync(
      join(project, 'transformaly.config.ts'),
      `export default ${JSON.stringify({ ...base, scorers: { pretrained: '../mean-scorer.ts', finetuned: { use: 'knn', options: { k: 0 } } }, plugins: ['./empty.ts'] })};\n`,
    );
    const text = await pluginsReport({ cwd: project });
    expect(text).toMatch(/^\.\.\/mean-scorer\.ts {2}\(mean-distance-scorer 2\.1\.0; also mean-distance\)$/m);
    expect(text).toMatch(/^knn .*\n(.*\n)*? {2}warning: the config's scorers\.finetuned\.options\.k: found 0, expected a value that must be >= 1$/m);
    expect(text).toMatch(/^Not usable\n\n\.\/empty\.ts {2}\(nothing 1\.0\.0\)\n {2}warning: provides no stage, so no config slot can use it$/m);
  });
});
