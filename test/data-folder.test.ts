import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  compileSchema,
  DataSourceError,
  FolderSource,
  folderSourceSchema,
  ImageDecodeError,
  isImageFile,
  listImages,
  NormalAbnormalSource,
  normalAbnormalSourceSchema,
} from '@transformaly/core';
import { imageItemsFromArgs } from 'transformaly';
import { pattern, tempDir, writeImage } from './fixtures/data/images.js';

const tmp = tempDir('folder');
afterAll(() => tmp.remove());
const at = (...parts: string[]) => join(tmp.path, ...parts);

async function errorOf(promise: Promise<unknown>): Promise<Error> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: Error) => e,
  );
}

beforeAll(async () => {
  const img = pattern(6, 4);
  // Labelled layout, with every supported format, hidden entries, a non-image and a nested folder.
  await writeImage(at('ds/train/cat/b.png'), img, 'png');
  await writeImage(at('ds/train/cat/a.jpg'), img, 'jpeg');
  await writeImage(at('ds/train/cat/sub/c.webp'), img, 'webp');
  await writeImage(at('ds/train/cat/Z.JPEG'), img, 'jpeg');
  await writeImage(at('ds/train/cat/.hidden.png'), img, 'png');
  await writeImage(at('ds/train/cat/.cache/d.png'), img, 'png');
  writeFileSync(at('ds/train/cat/notes.txt'), 'not an image');
  await writeImage(at('ds/train/dog/x.tiff'), img, 'tiff');
  await writeImage(at('ds/train/dog/y.tif'), { width: 2, height: 2, channels: 1, data: Uint8Array.from([1, 2, 3, 4]) }, 'tiff');
  await writeImage(
    at('ds/train/dog/z16.png'),
    { width: 1, height: 1, channels: 4, data: Uint16Array.from([1000, 2000, 3000, 0]) },
    'png',
  );
  mkdirSync(at('ds/train/.git'), { recursive: true });
  await writeImage(at('ds/test/cat/t1.png'), img, 'png');
  await writeImage(at('ds/test/dog/t2.png'), img, 'png');
  // A class that only the test split has.
  await writeImage(at('ds/test/bird/t3.png'), img, 'png');
  writeFileSync(at('ds/test/bird/broken.png'), 'corrupt');

  // Normal / abnormal layout.
  await writeImage(at('na/train/part1/n1.png'), img, 'png');
  await writeImage(at('na/train/n0.png'), img, 'png');
  await writeImage(at('na/test/normal/n2.png'), img, 'png');
  await writeImage(at('na/test/abnormal/a1.png'), img, 'png');
  await writeImage(at('na/test/abnormal/a0.webp'), img, 'webp');
});

describe('FolderSource', () => {
  it('lists classes and items in a fixed order, skipping hidden files and non-images', async () => {
    const source = new FolderSource({ root: at('ds') });
    expect(source.name).toBe('folder');
    // The classes are the train split's; 'bird' only labels novel test images.
    expect(await source.classes()).toEqual(['cat', 'dog']);
    const train = await source.items('train');
    // Code-unit order: upper case sorts before lower case, on every machine and locale.
    expect(train.map((item) => [item.label, item.id])).toEqual([
      ['cat', at('ds/train/cat/Z.JPEG')],
      ['cat', at('ds/train/cat/a.jpg')],
      ['cat', at('ds/train/cat/b.png')],
      ['cat', at('ds/train/cat/sub/c.webp')],
      ['dog', at('ds/train/dog/x.tiff')],
      ['dog', at('ds/train/dog/y.tif')],
      ['dog', at('ds/train/dog/z16.png')],
    ]);
    const test = await source.items('test');
    expect(test.map((item) => item.label)).toEqual(['bird', 'bird', 'cat', 'dog']);
  });

  it('loads items by decoding their files', async () => {
    const train = await new FolderSource({ root: at('ds') }).items('train');
    const png = await train[2].load();
    expect([png.width, png.height]).toEqual([6, 4]);
    expect(Array.from(png.data.subarray(0, 6), (v) => Math.round(v * 255))).toEqual(Array.from(pattern(6, 4).data.subarray(0, 6)));
    const gray = await train[5].load();
    expect(Array.from(gray.data.subarray(0, 6), (v) => Math.round(v * 255))).toEqual([1, 1, 1, 2, 2, 2]);
    const deep = await train[6].load();
    expect(Array.from(deep.data)).toEqual([1000, 2000, 3000].map((v) => Math.fround(v / 65535)));
  });

  it('lists a corrupt file, which fails with its path when loaded', async () => {
    const test = await new FolderSource({ root: at('ds') }).items('test');
    const broken = test.find((item) => item.id.endsWith('broken.png'));
    expect(broken).toBeDefined();
    const error = await errorOf(broken!.load());
    expect(error).toBeInstanceOf(ImageDecodeError);
    expect(error.message).toContain(at('ds/test/bird/broken.png'));
  });

  it('accepts separate train and test folders', async () => {
    const source = new FolderSource({ train: at('ds/train'), test: at('ds/test') });
    expect((await source.items('train')).length).toBe(7);
    expect(await source.classes()).toEqual(['cat', 'dog']);
  });

  it('follows links that stay inside the folder being read; the named folder may itself be a link', async () => {
    await writeImage(at('linked/train/cat/real.png'), pattern(2, 2), 'png');
    await writeImage(at('linked/train/cat/.store/b.png'), pattern(2, 2), 'png');
    await writeImage(at('linked/train/.dogs/x.png'), pattern(2, 2), 'png');
    symlinkSync('.store/b.png', at('linked/train/cat/link.png'));
    symlinkSync('.dogs', at('linked/train/dog'));
    symlinkSync(at('ds/test'), at('linked/test'));
    const source = new FolderSource({ root: at('linked') });
    expect((await source.items('train')).map((item) => [item.label, item.id])).toEqual([
      ['cat', at('linked/train/cat/link.png')],
      ['cat', at('linked/train/cat/real.png')],
      ['dog', at('linked/train/dog/x.png')],
    ]);
    expect((await source.items('test')).map((item) => item.id)).toEqual([
      at('linked/test/bird/broken.png'),
      at('linked/test/bird/t3.png'),
      at('linked/test/cat/t1.png'),
      at('linked/test/dog/t2.png'),
    ]);
  });

  it('refuses a link out of the folder being read (another split, another class), naming the link and its target', async () => {
    await writeImage(at('leak/train/cat/a.png'), pattern(2, 2), 'png');
    await writeImage(at('leak/test/cat/t.png'), pattern(2, 2), 'png');
    symlinkSync(at('ds/test/cat/t1.png'), at('leak/train/cat/t1.png'));
    const file = await errorOf(new FolderSource({ root: at('leak') }).items('train'));
    expect(file).toBeInstanceOf(DataSourceError);
    expect(file.message).toBe(
      `${at('leak/train/cat/t1.png')} is a symbolic link to ${at('ds/test/cat/t1.png')}, outside ${at('leak/train/cat')}: links are ` +
        'followed only inside the folder being read, so that they cannot pull in images from elsewhere (another class, the ' +
        'test split); copy the files in, or name that folder itself',
    );

    await writeImage(at('classes/train/cat/a.png'), pattern(2, 2), 'png');
    await writeImage(at('classes/train/dog/d.png'), pattern(2, 2), 'png');
    symlinkSync('../dog', at('classes/train/cat/dogs'));
    const sibling = await errorOf(new FolderSource({ root: at('classes') }).items('train'));
    expect(sibling.message).toMatch(new RegExp(`^${at('classes/train/cat/dogs')} is a symbolic link to ${at('classes/train/dog')}, outside ${at('classes/train/cat')}:`));

    await writeImage(at('outside/train/cat/a.png'), pattern(2, 2), 'png');
    symlinkSync(at('ds/train/dog'), at('outside/train/dog'));
    const classFolder = await errorOf(new FolderSource({ root: at('outside') }).items('train'));
    expect(classFolder.message).toMatch(new RegExp(`^${at('outside/train/dog')} is a symbolic link to ${at('ds/train/dog')}, outside ${at('outside/train')}:`));
  });

  it('reports a link back to a folder that holds it, or a cycle of links, as a loop', async () => {
    await writeImage(at('loop/train/cat/a.png'), pattern(2, 2), 'png');
    // The case of the report: up -> ../.. inside a class folder reached train/ and test/ through the data set's root.
    symlinkSync('../..', at('loop/train/cat/up'));
    const up = await errorOf(new FolderSource({ root: at('loop') }).items('train'));
    expect(up).toBeInstanceOf(DataSourceError);
    expect(up.message).toBe(`${at('loop/train/cat/up')} is a symbolic link to ${at('loop')}, a folder that contains the link itself (a loop); remove it`);

    await writeImage(at('self/a.png'), pattern(2, 2), 'png');
    symlinkSync('.', at('self/here'));
    await expect(listImages(at('self'), 'images')).rejects.toThrow(`${at('self/here')} is a symbolic link to ${at('self')}, a folder that contains the link itself (a loop)`);

    await writeImage(at('cycle/a.png'), pattern(2, 2), 'png');
    symlinkSync('y.png', at('cycle/x.png'));
    symlinkSync('x.png', at('cycle/y.png'));
    await expect(listImages(at('cycle'), 'images')).rejects.toThrow(`${at('cycle/x.png')} is a symbolic link that resolves to itself through other links (a loop)`);
  });

  it('names a missing folder and the layout expected', async () => {
    const error = await errorOf(new FolderSource({ root: at('nowhere') }).items('train'));
    expect(error).toBeInstanceOf(DataSourceError);
    expect(error.message).toContain(at('nowhere', 'train'));
    expect(error.message).toMatch(/does not exist; expected layout: .*train\/<class>\//);
  });

  it('rejects images outside class folders, and class folders without images', async () => {
    await writeImage(at('flat/train/loose.png'), pattern(2, 2), 'png');
    await writeImage(at('flat/test/cat/t.png'), pattern(2, 2), 'png');
    const loose = await errorOf(new FolderSource({ root: at('flat') }).items('train'));
    expect(loose.message).toContain(at('flat/train/loose.png'));
    expect(loose.message).toMatch(/one subfolder per class/);

    mkdirSync(at('empty/train/cat'), { recursive: true });
    writeFileSync(at('empty/train/cat/readme.md'), '');
    const empty = await errorOf(new FolderSource({ root: at('empty') }).items('train'));
    expect(empty.message).toContain(at('empty/train/cat'));
    expect(empty.message).toMatch(/No images \(png, jpg, jpeg, webp, tif, tiff\)/);
  });

  it('checks its options', () => {
    expect(() => new FolderSource({ root: 'a', train: 'b' })).toThrow(/either 'root' or both/);
    expect(() => new FolderSource({ train: 'b' })).toThrow(/'train' and 'test'/);
    expect(() => new FolderSource({ root: '' })).toThrow(/non-empty path/);
    expect(() => new FolderSource({ path: 'x' } as never)).toThrow(/unknown option 'path'/);
  });

  it('publishes a schema that accepts exactly one form', () => {
    const validate = compileSchema(folderSourceSchema);
    expect(validate({ root: '/data' })).toBe(true);
    expect(validate({ train: '/a', test: '/b' })).toBe(true);
    expect(validate({ root: '/data', train: '/a' })).toBe(false);
    expect(validate({ root: '/data', train: '/a', test: '/b' })).toBe(false);
    expect(validate({ train: '/a' })).toBe(false);
    expect(validate({})).toBe(false);
    expect(validate({ root: '/data', other: 1 })).toBe(false);
  });
});

describe('listImages and isImageFile', () => {
  it('walk one folder recursively in path order, by extension, case-insensitively', async () => {
    expect(await listImages(at('ds/train/cat'), 'images')).toEqual([
      at('ds/train/cat/Z.JPEG'),
      at('ds/train/cat/a.jpg'),
      at('ds/train/cat/b.png'),
      at('ds/train/cat/sub/c.webp'),
    ]);
    expect(['a.PNG', 'b.jpeg', 'c.Tif', 'd.tiff', 'e.webp'].every(isImageFile)).toBe(true);
    expect(['a.gif', 'b.png.txt', 'png', 'c.bmp'].some(isImageFile)).toBe(false);
    await expect(listImages(at('nowhere'), 'a folder of images')).rejects.toThrow(/does not exist; expected layout: a folder of images/);
  });

  it("the CLI's image arguments: a named file or folder may be a link; links inside a folder stay inside it", async () => {
    await writeImage(at('args/mine/a.png'), pattern(2, 2), 'png');
    symlinkSync(at('ds/train/cat/b.png'), at('args/named.png'));
    symlinkSync(at('args/mine'), at('args/named-folder'));
    const items = await imageItemsFromArgs(['named.png', 'named-folder'], at('args'));
    expect(items.map((item) => item.id)).toEqual([at('args/named-folder/a.png'), at('args/named.png')]);
    symlinkSync(at('ds/train'), at('args/mine/up'));
    await expect(imageItemsFromArgs(['mine'], at('args'))).rejects.toThrow(
      `${at('args/mine/up')} is a symbolic link to ${at('ds/train')}, outside ${at('args/mine')}`,
    );
    const big = await imageItemsFromArgs([at('ds/train/cat/b.png')], at('args'), { maxPixels: 23 });
    await expect(big[0].load()).rejects.toThrow(/6 x 4 = 24 pixels, more than the maxPixels limit of 23 pixels/);
  });
});

describe('NormalAbnormalSource', () => {
  it('has one class; test items are labelled normal or abnormal', async () => {
    const source = new NormalAbnormalSource({ train: at('na/train'), test: at('na/test') });
    expect(source.name).toBe('normal-abnormal');
    expect(await source.classes()).toEqual(['normal']);
    const train = await source.items('train');
    expect(train.map((item) => [item.label, item.id])).toEqual([
      ['normal', at('na/train/n0.png')],
      ['normal', at('na/train/part1/n1.png')],
    ]);
    const test = await source.items('test');
    expect(test.map((item) => [item.label, item.id])).toEqual([
      ['normal', at('na/test/normal/n2.png')],
      ['abnormal', at('na/test/abnormal/a0.webp')],
      ['abnormal', at('na/test/abnormal/a1.png')],
    ]);
    expect((await test[1].load()).width).toBe(6);
  });

  it('rejects a test folder with other subfolders or without abnormal/', async () => {
    await writeImage(at('na2/train/n.png'), pattern(2, 2), 'png');
    await writeImage(at('na2/test/normal/n.png'), pattern(2, 2), 'png');
    const missing = await errorOf(new NormalAbnormalSource({ train: at('na2/train'), test: at('na2/test') }).items('test'));
    expect(missing.message).toContain(at('na2/test/abnormal'));
    expect(missing.message).toMatch(/does not exist; expected layout/);

    await writeImage(at('na2/test/abnormal/a.png'), pattern(2, 2), 'png');
    await writeImage(at('na2/test/scratch/s.png'), pattern(2, 2), 'png');
    const extra = await errorOf(new NormalAbnormalSource({ train: at('na2/train'), test: at('na2/test') }).items('test'));
    expect(extra.message).toMatch(/only normal\/ and abnormal\/ subfolders, but has subfolder scratch/);
  });

  it('publishes its schema', () => {
    const validate = compileSchema(normalAbnormalSourceSchema);
    expect(validate({ train: 'a', test: 'b' })).toBe(true);
    expect(validate({ train: 'a' })).toBe(false);
    expect(() => new NormalAbnormalSource({ train: 'a' } as never)).toThrow(/'test'/);
  });
});
