import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { BUILTIN_PLUGINS, ConfigError, ConfigFileError, loadConfigFile, resolveConfig, type TransformalyConfig } from '@transformaly/core';

const dir = mkdtempSync(join(tmpdir(), 'transformaly-config-'));
const resolveIn = (raw: unknown) => resolveConfig(raw, { file: join(dir, 'transformaly.config.ts'), baseDir: dir, builtins: BUILTIN_PLUGINS });

const minimal: TransformalyConfig = {
  data: { use: 'idx', options: { dir: '/usr/share/datasets/fashion-mnist', classNames: 'fashion-mnist' } },
  backbone: { use: 'vit', options: { checkpoint: 'google/vit-base-patch16-224' } },
  distiller: false,
};

async function issuesOf(raw: unknown) {
  try {
    await resolveIn(raw);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).issues;
  }
  throw new Error('expected a ConfigError');
}

describe('config validation', () => {
  it('fills defaults, normalises stage refs and resolves paths against the config folder', async () => {
    const { config, stages } = await resolveIn({ ...minimal, scorers: { finetuned: 'knn' }, outputDir: 'out' });
    expect(config.protocol).toEqual({ mode: 'unimodal', classes: 'all' });
    expect(config.scorers.pretrained).toEqual({ use: 'gaussian', options: { whiten: { varianceFraction: 0.9 } } });
    expect(config.scorers.finetuned).toEqual({ use: 'knn', options: {} });
    expect(config.outputDir).toBe(join(dir, 'out'));
    expect(config.batchSize).toBe(32);
    expect(stages.map((s) => s.path)).toEqual(['data', 'runtime', 'backbone', 'scorers.pretrained', 'scorers.finetuned', 'combiner']);
  });

  it('resolves relative data paths against the config folder', async () => {
    const { config } = await resolveIn({ ...minimal, data: { use: 'folder', options: { root: './images' } } });
    expect((config.data.options as { root: string }).root).toBe(join(dir, 'images'));
  });

  it('reports every violation at once with its path, the value found and what was expected', async () => {
    const issues = await issuesOf({
      ...minimal,
      batchSize: 0,
      seed: 'one',
      protocol: { mode: 'bimodal' },
      colour: 'blue',
      threshold: { quantile: 2 },
    });
    const byPath = Object.fromEntries(issues.map((i) => [i.path, i]));
    expect(Object.keys(byPath).sort()).toEqual(['batchSize', 'colour', 'protocol.mode', 'seed', 'threshold.quantile'].sort());
    expect(byPath['threshold.quantile'].expected).toMatch(/<= 1/);
    expect(byPath.batchSize.found).toBe(0);
    expect(byPath.batchSize.expected).toMatch(/>= 1/);
    expect(byPath.seed.expected).toMatch(/integer/);
    expect(byPath['protocol.mode'].expected).toMatch(/"unimodal", "multimodal"/);
    expect(byPath.colour.expected).toMatch(/unknown key/);
    expect(byPath.colour.found).toBe('blue');
  });

  it('reports missing required stages', async () => {
    const issues = await issuesOf({ data: minimal.data, distiller: false });
    expect(issues.map((i) => i.path)).toEqual(['backbone']);
    expect(issues[0].expected).toMatch(/required/);
  });

  it("checks each stage's options against its plugin's schema, unknown keys included", async () => {
    const issues = await issuesOf({
      ...minimal,
      scorers: { pretrained: { use: 'knn', options: { k: 0, metric: 'cosine' } } },
      combiner: { use: 'sum', options: { weight: 2 } },
    });
    const paths = issues.map((i) => i.path).sort();
    expect(paths).toEqual(['combiner.options.weight', 'scorers.pretrained.options.k', 'scorers.pretrained.options.metric']);
    const message = new ConfigError('transformaly.config.ts', issues).message;
    expect(message).toContain('transformaly.config.ts: 3 problems');
    expect(message).toContain('scorers.pretrained.options.k: found 0, expected');
  });

  it('reports a stage given in a wrong form once, naming the forms allowed', async () => {
    const issues = await issuesOf({ ...minimal, combiner: 42 });
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ path: 'combiner', found: 42 });
    expect(issues[0].expected).toMatch(/string.*object with "use"/);
  });

  it('names a plugin that cannot be found', async () => {
    const issues = await issuesOf({ ...minimal, scorers: { pretrained: '@nobody/no-such-scorer' } });
    expect(issues).toHaveLength(1);
    expect(issues[0].path).toBe('scorers.pretrained.use');
    expect(issues[0].expected).toMatch(/@nobody\/no-such-scorer.*not installed/);
  });

  it('refuses a plugin in a slot it does not provide', async () => {
    const issues = await issuesOf({ ...minimal, combiner: 'gaussian' });
    expect(issues[0].path).toBe('combiner.use');
    expect(issues[0].expected).toMatch(/feature combiner.*binds DensityScorer/);
  });

  it('refuses a config that is not an object', async () => {
    const issues = await issuesOf([1, 2]);
    expect(issues[0].expected).toMatch(/an object/);
  });
});

const cleanup: string[] = [];
afterAll(() => cleanup.forEach((folder) => rmSync(folder, { recursive: true, force: true })));

describe('config files', () => {
  it('finds transformaly.config.ts in a folder and loads it with defineConfig through jiti', async () => {
    // Inside the repo, so that the config's import of @transformaly/core resolves as in a user's project.
    const fixtures = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');
    mkdirSync(fixtures, { recursive: true });
    const folder = mkdtempSync(join(fixtures, 'config-ts-'));
    cleanup.push(folder);
    writeFileSync(
      join(folder, 'transformaly.config.ts'),
      `import { defineConfig } from '@transformaly/core';\nconst size: number = 8;\nexport default defineConfig({ data: { use: 'folder', options: { root: './imgs' } }, backbone: 'vit', batchSize: size });\n`,
    );
    const { config, file } = await loadConfigFile({ cwd: folder });
    expect(file).toBe(join(folder, 'transformaly.config.ts'));
    expect(config).toMatchObject({ batchSize: 8, backbone: 'vit' });
  });

  it.each([
    ['transformaly.config.json', JSON.stringify({ batchSize: 4 })],
    ['transformaly.config.yaml', 'batchSize: 4\n'],
    ['transformaly.config.mjs', 'export default { batchSize: 4 };\n'],
  ])('loads %s', async (name, text) => {
    const folder = mkdtempSync(join(tmpdir(), 'transformaly-cfg-'));
    writeFileSync(join(folder, name), text);
    expect((await loadConfigFile({ cwd: folder })).config).toEqual({ batchSize: 4 });
  });

  it('loads an explicit --config path and says when it does not exist', async () => {
    const folder = mkdtempSync(join(tmpdir(), 'transformaly-cfg-'));
    writeFileSync(join(folder, 'other.yaml'), 'seed: 3\n');
    expect((await loadConfigFile({ cwd: folder, configPath: 'other.yaml' })).config).toEqual({ seed: 3 });
    await expect(loadConfigFile({ cwd: folder, configPath: 'missing.ts' })).rejects.toThrow(/missing\.ts does not exist/);
  });

  it('says where it looked when there is no config', async () => {
    const folder = mkdtempSync(join(tmpdir(), 'transformaly-cfg-none-'));
    await expect(loadConfigFile({ cwd: folder })).rejects.toThrow(ConfigFileError);
    await expect(loadConfigFile({ cwd: folder })).rejects.toThrow(/no config found in .*transformaly\.config\.ts.*--config/);
  });

  it('names the file when a TS config does not compile', async () => {
    const folder = mkdtempSync(join(tmpdir(), 'transformaly-cfg-bad-'));
    writeFileSync(join(folder, 'transformaly.config.ts'), 'export default { batchSize: ;\n');
    await expect(loadConfigFile({ cwd: folder })).rejects.toThrow(/transformaly\.config\.ts: cannot be read/);
  });
});
