// The real `transformaly` bin on what it may write where: detector folders it may replace, run folders whose cases it
// may keep, run ids, unusable output folders, stale temporary files, and detector folders that name plugin files.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MARKER_PLUGIN_NAME, MARKER_PLUGIN_VERSION, writeMarkerPlugin } from './fixtures/marker-plugin.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const bin = join(repo, 'cli', 'bin', 'transformaly.js');
const work = mkdtempSync(join(tmpdir(), 'transformaly-cli-folders-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const tinyVit = { random: { seed: 3, arch: { imageSize: [28, 28], patchSize: 7, width: 32, depth: 2, heads: 2, mlpDim: 64, layerNormEps: 1e-6, qkvBias: true } } };

/** A quick config: one class, 20 training images, 5 test images per class, no distiller unless asked. */
function config(extra: Record<string, unknown> = {}): string {
  return `export default ${JSON.stringify(
    {
      data: { use: 'idx', options: { dir: join(repo, 'demo', 'fashion-mnist'), classNames: 'fashion-mnist' } },
      protocol: { mode: 'unimodal', classes: ['Trouser'], limit: { train: 20, testPerClass: 5 } },
      backbone: { use: 'vit', options: tinyVit },
      runtime: { use: 'onnx', options: { threads: 1 } },
      distiller: false,
      batchSize: 25,
      outputDir: './results',
      ...extra,
    },
    null,
    2,
  )};\n`;
}

function project(name: string, extra: Record<string, unknown> = {}): string {
  const folder = join(work, name);
  mkdirSync(folder, { recursive: true });
  writeFileSync(join(folder, 'transformaly.config.ts'), config(extra));
  return folder;
}

function cli(args: string[], cwd: string) {
  const result = spawnSync(process.execPath, [bin, ...args], { cwd, encoding: 'utf8', env: { ...process.env, DEBUG: '' } });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Every path under `dir`, relative, with the modification time of files: to show nothing was written or deleted. */
function snapshot(dir: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    const path = join(entry.parentPath, entry.name);
    out[path.slice(dir.length + 1)] = entry.isFile() ? statSync(path).mtimeMs : 0;
  }
  return out;
}

let images = '';
beforeAll(async () => {
  if (!existsSync(join(repo, 'cli', 'dist', 'main.js'))) throw new Error('cli/dist is missing: run "npx tsc -b" (npm test does it first)');
  images = join(work, 'images');
  mkdirSync(images);
  for (const [name, colour] of [['a.png', 30], ['b.png', 220]] as const) {
    await sharp({ create: { width: 28, height: 28, channels: 3, background: { r: colour, g: colour, b: colour } } }).png().toFile(join(images, name));
  }
});

describe('fit --out', () => {
  it('refuses a folder that holds anything but a detector, before fitting, and leaves it as it was', () => {
    const folder = project('fit-out');
    const data = join(folder, 'my-project');
    mkdirSync(join(data, 'images'), { recursive: true });
    writeFileSync(join(data, 'notes.txt'), 'keep');
    writeFileSync(join(data, 'images', 'x.png'), 'not really');
    const before = snapshot(data);
    const refused = cli(['fit', '--out', 'my-project'], folder);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`${data} is not empty (2 entries: images, notes.txt) and is not a Transformaly detector; refusing to replace it`);
    expect(refused.stderr).not.toMatch(/fitting unimodal/);
    expect(snapshot(data)).toEqual(before);
    expect(readFileSync(join(data, 'notes.txt'), 'utf8')).toBe('keep');

    // A new folder, then the same folder again: an older detector is replaced.
    expect(cli(['fit', '--out', 'det'], folder).code).toBe(0);
    const first = readFileSync(join(folder, 'det', 'manifest.json'), 'utf8');
    const again = cli(['fit', '--out', 'det'], folder);
    expect(again.code, again.stderr).toBe(0);
    expect(readFileSync(join(folder, 'det', 'manifest.json'), 'utf8')).not.toBe(first);
    expect(readdirSync(join(folder, 'det')).sort()).toEqual(['combiner.safetensors', 'detector.safetensors', 'manifest.json', 'manifest.sha256', 'scorer-pretrained.safetensors']);
  });

  it('an --out or outputDir that cannot be written fails at the start, naming the folder and the cause', () => {
    // Tests run as root, where permissions do not stop writes; a path through a regular file fails for everyone.
    const folder = project('unwritable');
    const file = join(folder, 'a-file');
    writeFileSync(file, 'x');
    const fit = cli(['fit', '--out', join(file, 'det')], folder);
    expect(fit.code).toBe(1);
    expect(fit.stderr).toContain(`the folder of --out ${file} cannot be created: ${file} is a file, not a folder`);
    expect(fit.stderr).not.toMatch(/fitting unimodal/);

    writeFileSync(join(folder, 'transformaly.config.ts'), config({ outputDir: './a-file/results' }));
    const run = cli(['run', '--run-id', 'r'], folder);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`run folder ${join(file, 'results', 'r')} cannot be created: ${file} is a file, not a folder (ENOTDIR)`);
    expect(run.stderr).not.toMatch(/case 1\/1/);
    const fitDefault = cli(['fit'], folder);
    expect(fitDefault.code).toBe(1);
    expect(fitDefault.stderr).toContain(`cannot be created: ${file} is a file, not a folder`);
    expect(readFileSync(file, 'utf8')).toBe('x');
  });
});

describe('run folders', () => {
  it('refuses run ids that are not plain folder names, and writes nothing', () => {
    const folder = project('run-ids');
    const before = snapshot(work);
    for (const id of ['..', '../../x']) {
      const { code, stderr } = cli(['run', '--run-id', id], folder);
      expect(code, id).toBe(1);
      expect(stderr).toContain(`--run-id ${JSON.stringify(id)} is not a usable name`);
    }
    expect(snapshot(work)).toEqual(before);
  });

  it('refuses a reused run id after the config changed, naming the change; --force recomputes; results stay consistent', () => {
    const folder = project('reused');
    expect(cli(['run', '--run-id', 'r'], folder).code).toBe(0);
    const runDir = join(folder, 'results', 'r');
    const results = readFileSync(join(runDir, 'results.json'), 'utf8');
    expect(JSON.parse(readFileSync(join(runDir, 'cases', 'unimodal_Trouser', 'settings.json'), 'utf8')).hash).toMatch(/^[0-9a-f]{64}$/);

    writeFileSync(join(folder, 'transformaly.config.ts'), config({ scorers: { pretrained: 'knn' } }));
    const refused = cli(['run', '--run-id', 'r'], folder);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('holds cases computed with other settings than this config');
    expect(refused.stderr).toContain('- unimodal/Trouser: scorers.pretrained.use: saved "gaussian", now "knn"');
    expect(refused.stderr).toContain('rerun with --force');
    expect(readFileSync(join(runDir, 'results.json'), 'utf8')).toBe(results);

    const forced = cli(['run', '--run-id', 'r', '--force'], folder);
    expect(forced.code, forced.stderr).toBe(0);
    expect(forced.stderr).toMatch(/case unimodal\/Trouser: recomputing \(--force\)/);
    const after = JSON.parse(readFileSync(join(runDir, 'results.json'), 'utf8'));
    expect(after.config.scorers.pretrained.use).toBe('knn');
    const manifest = JSON.parse(readFileSync(join(runDir, 'cases', 'unimodal_Trouser', 'detector', 'manifest.json'), 'utf8'));
    expect(manifest.plugins['scorers.pretrained'].name).toBe('@transformaly/scorer-knn');
    // The metrics are those of the new scores: eval recomputes them from scores.csv.
    const evalOut = join(folder, 'eval.json');
    expect(cli(['eval', join(runDir, 'scores.csv'), '--out', evalOut], folder).code).toBe(0);
    const evaluation = JSON.parse(readFileSync(evalOut, 'utf8'));
    expect(evaluation.cases[0].metrics).toEqual(after.cases[0].metrics);
    expect(after.cases[0].metrics).not.toEqual(JSON.parse(results).cases[0].metrics);
  });

  it("removes this project's stale temporary files from the run folder, and nothing else", () => {
    const folder = project('stale');
    expect(cli(['run', '--run-id', 'r'], folder).code).toBe(0);
    const runDir = join(folder, 'results', 'r');
    const caseDir = join(runDir, 'cases', 'unimodal_Trouser');
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    const stale = [join(runDir, `.results.json.${dead}.0123abcd.tmp`), join(caseDir, `.scores.csv.${dead}.0123abcd.tmp`)];
    const staleDir = join(caseDir, `.detector.${dead}.89abcdef.tmp`);
    const kept = [join(runDir, 'my-notes.tmp'), join(runDir, `.results.json.${dead}.tmp`)];
    for (const f of [...stale, ...kept]) writeFileSync(f, 'x');
    mkdirSync(staleDir);
    writeFileSync(join(staleDir, 'manifest.json'), '{}');
    const again = cli(['run', '--run-id', 'r'], folder);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/already done, kept/);
    for (const f of [...stale, staleDir]) expect(existsSync(f), f).toBe(false);
    for (const f of kept) expect(existsSync(f), f).toBe(true);
  });
});

describe('score -d', () => {
  it('never imports a plugin file the detector names; --plugin NAME=PATH supplies it, moved or not; an edited manifest is refused', () => {
    const folder = project('marker', { scorers: { pretrained: './plugin-src/marker-scorer.ts' } });
    const marker = join(work, 'marker-imported.txt');
    writeMarkerPlugin(join(folder, 'plugin-src'), marker);
    const fit = cli(['fit', '--out', 'det'], folder);
    expect(fit.code, fit.stderr).toBe(0);
    expect(existsSync(marker)).toBe(true);
    rmSync(marker);

    const det = join(folder, 'det');
    const refused = cli(['score', '-d', det, images], folder);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`scorers.pretrained plugin "${MARKER_PLUGIN_NAME}" version ${MARKER_PLUGIN_VERSION} was loaded from the file ${join(folder, 'plugin-src', 'marker-scorer.ts')}`);
    expect(refused.stderr).toContain(`give it with --plugin ${MARKER_PLUGIN_NAME}=PATH`);
    expect(refused.stderr).not.toMatch(/npm install/);
    expect(existsSync(marker)).toBe(false);

    const before = cli(['score', '-d', det, '--plugin', `${MARKER_PLUGIN_NAME}=plugin-src/marker-scorer.ts`, images, '--out', 'before.csv'], folder);
    expect(before.code, before.stderr).toBe(0);
    renameSync(join(folder, 'plugin-src'), join(folder, 'moved'));
    const moved = cli(['score', '-d', det, '--plugin', `${MARKER_PLUGIN_NAME}=moved/marker-scorer.ts`, images, '--out', 'after.csv'], folder);
    expect(moved.code, moved.stderr).toBe(0);
    const rows = readFileSync(join(folder, 'after.csv'), 'utf8').trim().split('\n');
    expect(rows.map((r) => r.split(',')[0])).toEqual(['path', join(images, 'a.png'), join(images, 'b.png')]);
    expect(readFileSync(join(folder, 'after.csv'), 'utf8')).toBe(readFileSync(join(folder, 'before.csv'), 'utf8'));
    const misnamed = cli(['score', '-d', det, '--plugin', `other=moved/marker-scorer.ts`, images], folder);
    expect(misnamed.code).toBe(1);
    expect(misnamed.stderr).toContain(`--plugin other=moved/marker-scorer.ts: that plugin is named "${MARKER_PLUGIN_NAME}", not "other"`);

    // A threshold edited by hand (a reader would then flag other images) is refused.
    const manifestPath = join(det, 'manifest.json');
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
    manifest.stages.detector.meta.threshold = 0;
    writeFileSync(manifestPath, JSON.stringify(manifest, null, 2));
    const edited = cli(['score', '-d', det, '--plugin', `${MARKER_PLUGIN_NAME}=moved/marker-scorer.ts`, images], folder);
    expect(edited.code).toBe(1);
    expect(edited.stderr).toMatch(/manifest\.json: checksum mismatch .*edited or damaged/);
    // Even with its checksum file rewritten to match, a manifest may name only installed packages, never a path.
    rmSync(marker, { force: true });
    manifest.plugins['scorers.pretrained'] = { name: 'x', version: null, source: 'package', package: '../moved/marker-scorer.ts' };
    const text = JSON.stringify(manifest, null, 2);
    writeFileSync(manifestPath, text);
    writeFileSync(join(det, 'manifest.sha256'), `${createHash('sha256').update(text).digest('hex')}  manifest.json\n`);
    const forged = cli(['score', '-d', det, images], folder);
    expect(forged.code).toBe(1);
    expect(forged.stderr).toMatch(/field "plugins\.scorers\.pretrained\.package" must match pattern/);
    expect(existsSync(marker)).toBe(false);
  });
});

describe('fit, interrupted', () => {
  it('says to rerun the same command, and the same command resumes; --restart starts afresh', async () => {
    const folder = project('interrupted', {
      protocol: { mode: 'unimodal', classes: ['Trouser'], limit: { train: 40, testPerClass: 5 } },
      distiller: { use: 'transformaly', options: { blocks: { last: 1 }, epochs: 60 } },
      batchSize: 20,
    });
    const interrupt = (args: string[]) =>
      new Promise<{ epoch: number; stderr: string; code: number | null }>((done, reject) => {
        const child = spawn(process.execPath, [bin, 'fit', '--out', 'det', ...args], { cwd: folder, env: { ...process.env, DEBUG: '' } });
        let stderr = '';
        let epoch = 0;
        child.stderr.on('data', (chunk) => {
          stderr += chunk;
          for (const m of stderr.matchAll(/distill epoch (\d+)\/60/g)) epoch = Number(m[1]);
          if (epoch >= 4 && !child.killed) child.kill('SIGINT');
        });
        child.on('exit', (code) => (child.killed ? done({ epoch, stderr, code }) : reject(new Error(`fit ended before it could be interrupted:\n${stderr}`))));
      });
    const first = await interrupt([]);
    expect(first.code).toBe(130);
    expect(first.stderr).toMatch(/stopped; rerun the same command to resume/);

    // --restart discards that checkpoint; interrupted in turn, it says how to resume.
    const restarted = await interrupt(['--restart']);
    expect(restarted.code).toBe(130);
    expect(restarted.stderr).not.toMatch(/resuming after epoch/);
    expect(restarted.stderr).toMatch(/distill epoch 1\/60/);
    expect(restarted.stderr).toMatch(/stopped; rerun the command without --restart to resume/);

    const resumed = cli(['fit', '--out', 'det'], folder);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(Number(/resuming after epoch (\d+)/.exec(resumed.stderr)?.[1])).toBeGreaterThanOrEqual(restarted.epoch - 2);
    expect(resumed.stderr).not.toMatch(/distill epoch 1\/60/);
    expect(existsSync(join(folder, 'det', 'manifest.json'))).toBe(true);
  });
});
