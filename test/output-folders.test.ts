// What may be written where: paths joined from input stay under their root, an unusable output folder is named with
// its cause before any work, and only this project's own stale temporary files are cleaned up.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { caseFolderName, checkSafeName, ensureWritableFolder, removeStaleTemps, resolveInside, runDirOf, UnsafePathError } from '@transformaly/core';

const work = mkdtempSync(join(tmpdir(), 'transformaly-folders-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The pid of a process that has exited. */
function deadPid(): number {
  return spawnSync(process.execPath, ['-e', '0']).pid!;
}

describe('paths from input', () => {
  it('resolveInside keeps a joined path under its root', () => {
    expect(resolveInside('/data/out', 'run', 'cases', 'a')).toBe('/data/out/run/cases/a');
    expect(resolveInside('/data/out', 'a/../b')).toBe('/data/out/b');
    expect(resolveInside('/data/out', '..foo')).toBe('/data/out/..foo');
    for (const escape of [['..'], ['../x'], ['a', '..', '..', 'x'], ['/etc/passwd'.replace(/^/, '../../..')]]) {
      expect(() => resolveInside('/data/out', ...escape), escape.join('/')).toThrow(UnsafePathError);
    }
    expect(() => resolveInside('/data/out', '../../x')).toThrow('refusing the path "../../x": it leaves /data/out');
  });

  it('run ids are plain folder names', () => {
    expect(runDirOf('/data/out', 'r-1.2_b')).toBe('/data/out/r-1.2_b');
    for (const id of ['..', '.', '../../x', 'a/b', '.hidden', 'a\\b', '', 'x'.repeat(256)]) {
      expect(() => runDirOf('/data/out', id), id).toThrow(/run id ".*" is not a usable name: use letters, digits/);
    }
    expect(() => checkSafeName('..', '--run-id')).toThrow(`--run-id ".." is not a usable name`);
  });

  it('case folders are safe names whatever the class is called', () => {
    expect(caseFolderName('unimodal/T-shirt/top')).toBe('unimodal_T-shirt_top');
    expect(caseFolderName('folder/../..')).toBe('folder_.._..');
    expect(caseFolderName('../x')).toBe('_._x');
  });
});

describe('ensureWritableFolder', () => {
  it('names the folder and the real cause when a part of its path is a file', async () => {
    const file = join(work, 'a-file');
    writeFileSync(file, 'x');
    await expect(ensureWritableFolder(join(file, 'results', 'run'), 'outputDir')).rejects.toThrow(
      `outputDir ${join(file, 'results', 'run')} cannot be created: ${file} is a file, not a folder (ENOTDIR)`,
    );
    await expect(ensureWritableFolder(file, 'outputDir')).rejects.toThrow(`outputDir ${file} cannot be created: ${file} is a file, not a folder (EEXIST)`);
  });

  it('creates the folder and leaves nothing in it', async () => {
    const dir = join(work, 'fresh', 'deep');
    await ensureWritableFolder(dir, 'outputDir');
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe('removeStaleTemps', () => {
  it("removes this project's temporary files of dead processes, or older than a day; nothing else", async () => {
    const dir = join(work, 'stale');
    mkdirSync(dir);
    const dead = deadPid();
    const alive = process.ppid;
    const names = {
      deadFile: `.results.json.${dead}.0a1b2c3d.tmp`,
      deadDir: `.detector.${dead}.deadbeef.tmp`,
      deadOld: `.detector.${dead}.deadbeef.tmp.old`,
      aliveRecent: `.results.json.${alive}.12345678.tmp`,
      aliveOld: `.scores.csv.${alive}.87654321.tmp`,
      own: `.results.json.${process.pid}.11111111.tmp`,
      notOurs1: '.results.json.tmp',
      notOurs2: `results.json.${dead}.0a1b2c3d.tmp`,
      notOurs3: `.results.json.${dead}.xyz.tmp`,
      notOurs4: 'notes.txt',
    };
    for (const [key, name] of Object.entries(names)) {
      if (key === 'deadDir' || key === 'deadOld') {
        mkdirSync(join(dir, name));
        writeFileSync(join(dir, name, 'manifest.json'), '{}');
      } else writeFileSync(join(dir, name), 'x');
    }
    const twoDaysAgo = new Date(Date.now() - 2 * 24 * 3600 * 1000);
    utimesSync(join(dir, names.aliveOld), twoDaysAgo, twoDaysAgo);
    const removed = await removeStaleTemps(dir);
    expect(removed.sort()).toEqual([names.deadFile, names.deadDir, names.deadOld, names.aliveOld].sort());
    expect(readdirSync(dir).sort()).toEqual([names.aliveRecent, names.own, names.notOurs1, names.notOurs2, names.notOurs3, names.notOurs4].sort());
    expect(await removeStaleTemps(join(work, 'does-not-exist'))).toEqual([]);
  });
});
