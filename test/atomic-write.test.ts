// Atomic writes on a disk that fills up part-way: the kernel takes the first 4096 bytes of a write and refuses the
// rest (a short write, then ENOSPC or EFBIG). The file being replaced must stay as it was, no temporary file may be
// left, and the error must name the file. See test/fixtures/full-disk.ts for the two ways the disk is filled.
import { readdirSync, readFileSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readNpy, writeFully, writeNpy } from '@transformaly/core';
import { FULL_DISK_KINDS, fullDisk, type FullDisk } from './fixtures/full-disk.js';
import { tempDir } from './fixtures/data/images.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const coreUrl = pathToFileURL(join(repo, 'core', 'dist', 'index.js')).href;
const bin = join(repo, 'cli', 'bin', 'transformaly.js');

// Runs one of core's writers in a child process and prints what it threw.
const writer = `
const [, coreUrl, target, what] = process.argv;
const core = await import(coreUrl);
try {
  if (what === 'npy') await core.writeNpy(target, { rows: 60, cols: 48, data: new Float32Array(60 * 48).fill(1.5) });
  else await core.writeFileAtomic(target, [new Uint8Array(128).fill(1), new Uint8Array(11520).fill(2)]);
  console.log(JSON.stringify({ ok: true }));
} catch (e) {
  console.log(JSON.stringify({ name: e.name, message: e.message, code: e.code, path: e.path }));
}`;

describe.each(FULL_DISK_KINDS)('atomic writes on a full disk (%s)', (how) => {
  let disk: FullDisk;
  const images = tempDir('full-disk-images');
  const oldNpy = { rows: 2, cols: 48, data: Float32Array.from({ length: 96 }, (_, i) => i / 8) };

  beforeAll(async () => {
    disk = fullDisk('full-disk', how);
    // Files that exist before the disk fills: each failed write below must leave its file exactly as it was.
    await writeNpy(join(disk.dir, 'old.npy'), oldNpy);
    await writeNpy(join(disk.dir, 'features.npy'), oldNpy);
    disk.fill();
    // 60 images: their 48-wide float32 features take 128 + 60 * 48 * 4 = 11648 bytes, more than the 4096 left.
    for (let i = 0; i < 60; i++) {
      await sharp({ create: { width: 28, height: 28, channels: 3, background: { r: i * 4, g: 9, b: 100 } } })
        .png()
        .toFile(join(images.path, `${String(i).padStart(2, '0')}.png`));
    }
  });
  afterAll(() => {
    disk.remove();
    images.remove();
  });

  const entries = () => readdirSync(disk.dir).filter((n) => n !== 'filler').sort();

  it('writeFileAtomic: a short write is an error naming the file; nothing is left in its place', () => {
    const target = join(disk.dir, 'new.bin');
    const child = disk.node(['--input-type=module', '-e', writer, coreUrl, target, 'bytes']);
    expect(child.status, child.stderr).toBe(0);
    const error = JSON.parse(child.stdout);
    expect(error.name).toBe('FileWriteError');
    expect(error.path).toBe(target);
    expect(error.code).toBe(disk.code);
    expect(error.message).toContain(`cannot write ${target}: `);
    expect(error.message).toContain('(4096 of 11648 bytes written)');
    expect(entries()).toEqual(['features.npy', 'old.npy']);
  });

  it('writeNpy over an older file: the older file stays whole', async () => {
    const target = join(disk.dir, 'old.npy');
    const before = readFileSync(target);
    const child = disk.node(['--input-type=module', '-e', writer, coreUrl, target, 'npy']);
    const error = JSON.parse(child.stdout);
    expect(error.code).toBe(disk.code);
    expect(error.message).toContain(`cannot write ${target}: `);
    expect(readFileSync(target).equals(before)).toBe(true);
    expect((await readNpy(target)).data).toEqual(oldNpy.data);
    expect(entries()).toEqual(['features.npy', 'old.npy']);
  });

  it('transformaly embed: exits 1 naming the .npy, and keeps the previous one whole', async () => {
    const out = join(disk.dir, 'features.npy');
    const before = readFileSync(out);
    const checkpoint = join(repo, 'test', 'golden', 'vit', 'a', 'hf');
    const child = disk.node([bin, 'embed', images.path, '--checkpoint', checkpoint, '--out', out], {
      env: { ...process.env, DEBUG: '' },
    });
    expect(child.status, child.stderr).toBe(1);
    expect(child.stderr).toContain(`cannot write ${out}: `);
    expect(child.stderr).toContain('(4096 of 11648 bytes written)');
    expect(child.stdout).not.toMatch(/wrote/);
    expect(readFileSync(out).equals(before)).toBe(true);
    expect(entries()).toEqual(['features.npy', 'old.npy']);
  });
});

describe('writeFully', () => {
  it('fails, naming how far it got, when a write takes no byte, instead of looping forever', async () => {
    let calls = 0;
    const stuck = {
      write: async (_bytes: Uint8Array, _offset: number, length: number) => ({ bytesWritten: calls++ === 0 ? Math.min(length, 3) : 0 }),
    } as unknown as FileHandle;
    await expect(writeFully(stuck, new Uint8Array(10), 0)).rejects.toThrow('the write stopped after 3 of 10 bytes');
    expect(calls).toBe(2);
  });

  it('loops over short writes until every byte is written, at the right positions', async () => {
    const file = new Uint8Array(12);
    const handle = {
      write: async (bytes: Uint8Array, offset: number, length: number, position: number) => {
        const n = Math.min(length, 4);
        file.set(bytes.subarray(offset, offset + n), position);
        return { bytesWritten: n };
      },
    } as unknown as FileHandle;
    const end = await writeFully(handle, Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), 2);
    expect(end).toBe(12);
    expect(Array.from(file)).toEqual([0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });
});
