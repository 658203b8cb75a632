import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  heldOutSplit,
  IdxSource,
  makeCases,
  NormalAbnormalSource,
  type ImageItem,
  type ImageSource,
  type Split,
} from '@transformaly/core';
import { pattern, tempDir, writeImage } from './fixtures/data/images.js';

/** A small labelled data set held in memory: the ImageSource contract without files. */
class ListSource implements ImageSource {
  readonly name = 'list';
  constructor(
    private readonly names: string[],
    private readonly splits: Record<Split, string[]>,
  ) {}
  async classes(): Promise<string[]> {
    return this.names;
  }
  async items(split: Split): Promise<ImageItem[]> {
    return this.splits[split].map((label, i) => ({
      id: `${split}#${i}`,
      label,
      load: async () => ({ width: 1, height: 1, data: Float32Array.of(i, i, i) }),
    }));
  }
}

const source = new ListSource(['a', 'b', 'c'], {
  train: ['a', 'b', 'c', 'a', 'b', 'c', 'a'],
  test: ['c', 'b', 'a', 'a', 'c'],
});

describe('makeCases', () => {
  it('unimodal: one class is normal, every other test image anomalous', async () => {
    const cases = await makeCases(source, { mode: 'unimodal' });
    expect(cases.map((c) => c.id)).toEqual(['unimodal/a', 'unimodal/b', 'unimodal/c']);
    const a = cases[0];
    expect(a.mode).toBe('unimodal');
    expect(a.className).toBe('a');
    expect(a.train.map((item) => item.id)).toEqual(['train#0', 'train#3', 'train#6']);
    expect(a.test.map((t) => [t.item.id, t.anomalous])).toEqual([
      ['test#0', true],
      ['test#1', true],
      ['test#2', false],
      ['test#3', false],
      ['test#4', true],
    ]);
  });

  it('multimodal: one class is anomalous, the others are the normal training set', async () => {
    const cases = await makeCases(source, { mode: 'multimodal', classes: ['c'] });
    expect(cases.length).toBe(1);
    const [c] = cases;
    expect([c.id, c.mode, c.className]).toEqual(['multimodal/c', 'multimodal', 'c']);
    expect(c.train.map((item) => item.label)).toEqual(['a', 'b', 'a', 'b', 'a']);
    expect(c.test.map((t) => t.anomalous)).toEqual([true, false, false, false, true]);
  });

  it('counts a label outside the classes (a novel test-only class) as anomalous in both modes', async () => {
    const novel = new ListSource(['a', 'b'], { train: ['a', 'b', 'a'], test: ['a', 'new', 'b'] });
    const [uni] = await makeCases(novel, { mode: 'unimodal', classes: ['a'] });
    expect(uni.test.map((t) => t.anomalous)).toEqual([false, true, true]);
    const [multi] = await makeCases(novel, { mode: 'multimodal', classes: ['a'] });
    expect(multi.test.map((t) => t.anomalous)).toEqual([true, true, false]);
  });

  it('keeps the requested class order and rejects unknown or repeated classes', async () => {
    const cases = await makeCases(source, { mode: 'unimodal', classes: ['c', 'a'] });
    expect(cases.map((c) => c.className)).toEqual(['c', 'a']);
    await expect(makeCases(source, { mode: 'unimodal', classes: ['d'] })).rejects.toThrow(
      'Unknown class "d"; available classes: "a", "b", "c"',
    );
    await expect(makeCases(source, { mode: 'unimodal', classes: ['a', 'a'] })).rejects.toThrow(/twice/);
    await expect(makeCases(source, { mode: 'pairs' as 'unimodal' })).rejects.toThrow(/mode/);
  });

  it('refuses a case without training images or without both kinds of test image', async () => {
    const sparse = new ListSource(['a', 'b', 'z'], { train: ['a', 'b'], test: ['a', 'b'] });
    await expect(makeCases(sparse, { mode: 'unimodal', classes: ['z'] })).rejects.toThrow(
      /unimodal\/z: no training images/,
    );
    const oneSided = new ListSource(['a', 'b'], { train: ['a', 'b'], test: ['a', 'a'] });
    await expect(makeCases(oneSided, { mode: 'unimodal', classes: ['a'] })).rejects.toThrow(/no anomalous images/);
    await expect(makeCases(oneSided, { mode: 'multimodal', classes: ['a'] })).rejects.toThrow(/no normal images/);
  });

  describe('on the normal/abnormal layout', () => {
    const tmp = tempDir('protocol');
    afterAll(() => tmp.remove());
    beforeAll(async () => {
      await writeImage(join(tmp.path, 'train/n.png'), pattern(2, 2), 'png');
      await writeImage(join(tmp.path, 'test/normal/n.png'), pattern(2, 2), 'png');
      await writeImage(join(tmp.path, 'test/abnormal/a.png'), pattern(2, 2), 'png');
    });

    it('makes a single folder case', async () => {
      const folder = new NormalAbnormalSource({ train: join(tmp.path, 'train'), test: join(tmp.path, 'test') });
      const cases = await makeCases(folder, { mode: 'unimodal' });
      expect(cases.length).toBe(1);
      expect([cases[0].id, cases[0].mode, cases[0].className]).toEqual(['folder/normal', 'folder', 'normal']);
      expect(cases[0].train.length).toBe(1);
      expect(cases[0].test.map((t) => [t.item.label, t.anomalous])).toEqual([
        ['normal', false],
        ['abnormal', true],
      ]);
      await expect(makeCases(folder, { mode: 'multimodal' })).rejects.toThrow(/not 'multimodal'/);
      await expect(makeCases(folder, { mode: 'unimodal', classes: ['cat'] })).rejects.toThrow(/available classes: "normal"/);
    });
  });

  it('builds the Fashion-MNIST cases from the real files', async () => {
    const fashion = new IdxSource({ dir: '/usr/share/datasets/fashion-mnist', classNames: 'fashion-mnist' });
    const [uni] = await makeCases(fashion, { mode: 'unimodal', classes: ['Trouser'] });
    expect(uni.id).toBe('unimodal/Trouser');
    expect(uni.train.length).toBe(6000);
    expect(uni.train.every((item) => item.label === 'Trouser')).toBe(true);
    expect(uni.test.length).toBe(10000);
    expect(uni.test.filter((t) => !t.anomalous).length).toBe(1000);
    const [multi] = await makeCases(fashion, { mode: 'multimodal', classes: ['T-shirt/top'] });
    expect(multi.id).toBe('multimodal/T-shirt/top');
    expect(multi.train.length).toBe(54000);
    expect(multi.test.filter((t) => t.anomalous).length).toBe(1000);
  });

  it('caps training and per-class test images with a seeded choice that keeps the source order', async () => {
    const fashion = new IdxSource({ dir: '/usr/share/datasets/fashion-mnist', classNames: 'fashion-mnist' });
    const options = { mode: 'unimodal' as const, classes: ['Trouser', 'Bag'], limit: { train: 50, testPerClass: 20 }, seed: 7 };
    const [trouser, bag] = await makeCases(fashion, options);
    expect(trouser.train).toHaveLength(50);
    expect(trouser.train.every((item) => item.label === 'Trouser')).toBe(true);
    expect(trouser.test).toHaveLength(200);
    const perLabel = new Map<string, number>();
    for (const t of trouser.test) perLabel.set(t.item.label, (perLabel.get(t.item.label) ?? 0) + 1);
    expect([...perLabel.values()]).toEqual(Array(10).fill(20));
    const index = (id: string) => Number(id.split('#')[1]);
    const ids = trouser.train.map((item) => index(item.id));
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    // Every case scores the same test images, so that multimodal and unimodal tables compare like with like.
    expect(bag.test.map((t) => t.item.id)).toEqual(trouser.test.map((t) => t.item.id));
    const again = await makeCases(fashion, options);
    expect(again[0].train.map((i) => i.id)).toEqual(trouser.train.map((i) => i.id));
    const other = await makeCases(fashion, { ...options, seed: 8 });
    expect(other[0].train.map((i) => i.id)).not.toEqual(trouser.train.map((i) => i.id));
  });
});

describe('heldOutSplit', () => {
  const items = Array.from({ length: 50 }, (_, i) => `item${i}`);

  it('is deterministic for a seed and differs between seeds', () => {
    const one = heldOutSplit(items, 0.2, 7);
    expect(heldOutSplit(items, 0.2, 7)).toEqual(one);
    expect(heldOutSplit(items, 0.2, 8).heldOut).not.toEqual(one.heldOut);
  });

  it('partitions the items, each side in input order', () => {
    const { fit, heldOut } = heldOutSplit(items, 0.2, 123);
    expect(heldOut.length).toBe(10);
    expect(fit.length).toBe(40);
    expect([...fit, ...heldOut].sort()).toEqual([...items].sort());
    const index = (s: string) => Number(s.slice(4));
    expect(fit.map(index)).toEqual([...fit.map(index)].sort((a, b) => a - b));
    expect(heldOut.map(index)).toEqual([...heldOut.map(index)].sort((a, b) => a - b));
    // A shuffle, not a prefix or suffix of the list.
    expect(heldOut).not.toEqual(items.slice(0, 10));
    expect(heldOut).not.toEqual(items.slice(40));
  });

  it('handles the edges: no hold-out, tiny sets, bad arguments', () => {
    expect(heldOutSplit(items, 0, 1)).toEqual({ fit: items, heldOut: [] });
    expect(heldOutSplit(['x', 'y'], 0.01, 1).heldOut.length).toBe(1);
    expect(heldOutSplit(['x', 'y', 'z'], 0.99, 1).fit.length).toBe(1);
    expect(heldOutSplit([], 0.5, 1)).toEqual({ fit: [], heldOut: [] });
    expect(() => heldOutSplit(items, 1, 1)).toThrow(/fraction/);
    expect(() => heldOutSplit(items, 0.1, 1.5)).toThrow(/seed/);
  });
});
