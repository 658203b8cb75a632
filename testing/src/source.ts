import { describeValue, type ImageItem, type ImageSource, type Split } from '@transformaly/core';
import { check, contractName, firstDifference, instances, runChecks, subjectName, type Check, type Subject, type SubjectOptions } from './checks.js';

const SPLITS: readonly Split[] = ['train', 'test'];

/**
 * The ImageSource contract as checks: named classes, a train and a test listing of images with distinct ids and
 * labels among the classes, listings that repeat in the same order (protocol cases and held-out splits depend on it)
 * and are the caller's to change, and images that decode to HWC RGB in [0, 1], the same on every load.
 * One instance serves the whole suite (an image source is built once per pipeline). Loads the first and the last image
 * of each split, so a large data set checks quickly.
 */
export function imageSourceChecks(subject: Subject<'data'>, options: SubjectOptions = {}): Check[] {
  const make = instances('data', subject, options);
  let shared: Promise<ImageSource> | undefined;
  const source = () => (shared ??= make());
  const listing = async (split: Split, fail: (detail: string) => never): Promise<ImageItem[]> => {
    const items = await (await source()).items(split);
    if (!Array.isArray(items)) fail(`items('${split}') returned ${describeValue(items)}, not a list`);
    return items;
  };
  const sample = (items: ImageItem[]) => [...new Set([items[0], items[items.length - 1]])].filter((item) => item !== undefined);

  return [
    check('classes', 'classes() lists one or more distinct, non-empty class names', async (fail) => {
      const classes = await (await source()).classes();
      if (!Array.isArray(classes) || classes.some((c) => typeof c !== 'string' || c === '')) fail(`classes() returned ${describeValue(classes)}, not a list of names`);
      if (classes.length === 0) fail('classes() lists no class');
      const twice = classes.find((c, i) => classes.indexOf(c) !== i);
      if (twice !== undefined) fail(`class "${twice}" is listed twice`);
    }),
    check('listing', "items('train') and items('test') list images { id, label, load() }: ids distinct within a split, train labels among the classes", async (fail) => {
      const classes = new Set(await (await source()).classes());
      for (const split of SPLITS) {
        const items = await listing(split, fail);
        if (items.length === 0) fail(`items('${split}') lists no image`);
        const ids = new Set<string>();
        items.forEach((item, i) => {
          if (typeof item?.id !== 'string' || item.id === '') fail(`${split} item ${i} has id ${describeValue(item?.id)}, not a non-empty string`);
          if (typeof item.load !== 'function') fail(`${split} item ${item.id} has no load()`);
          // A test label outside the classes is a novel class, anomalous in every protocol case.
          if (typeof item.label !== 'string' || item.label === '') fail(`${split} item ${item.id} has label ${describeValue(item.label)}, not a class name`);
          if (split === 'train' && !classes.has(item.label)) fail(`train item ${item.id} has label ${JSON.stringify(item.label)}, which classes() does not list`);
          if (ids.has(item.id)) fail(`${split} item id ${item.id} is listed twice`);
          ids.add(item.id);
        });
      }
    }),
    check('stable-listing', 'listing a split again gives the same images in the same order', async (fail) => {
      for (const split of SPLITS) {
        const first = (await listing(split, fail)).map((item) => `${item.id}\t${item.label}`);
        const again = (await listing(split, fail)).map((item) => `${item.id}\t${item.label}`);
        const at = first.findIndex((entry, i) => entry !== again[i]);
        if (first.length !== again.length || at >= 0) fail(`the second items('${split}') differs from the first${at >= 0 ? ` at position ${at}` : ` in length (${first.length}, then ${again.length})`}`);
      }
    }),
    check('listing-copies', "the list items() returns is the caller's: changing it does not change the next listing", async (fail) => {
      const items = await listing('train', fail);
      const count = items.length;
      items.length = 0;
      const again = await listing('train', fail);
      if (again.length !== count) fail(`emptying the list items('train') returned changed the next listing (${again.length} images, expected ${count})`);
    }),
    check('load', 'load() decodes an image to { width, height, data }: HWC RGB, a Float32Array of width x height x 3 values in [0, 1]', async (fail) => {
      for (const split of SPLITS) {
        for (const item of sample(await listing(split, fail))) {
          const image = await item.load();
          const { width, height, data } = image ?? {};
          if (!Number.isInteger(width) || width < 1 || !Number.isInteger(height) || height < 1) fail(`${item.id}: width ${width} and height ${height} are not positive integers`);
          if (!(data instanceof Float32Array)) fail(`${item.id}: data is ${describeValue(data)}, not a Float32Array`);
          if (data.length !== width * height * 3) fail(`${item.id}: ${data.length} values for ${width} x ${height} RGB (expected ${width * height * 3})`);
          const bad = data.findIndex((v) => !(v >= 0 && v <= 1));
          if (bad >= 0) fail(`${item.id}: value ${bad} is ${data[bad]}, outside [0, 1]`);
        }
      }
    }),
    check('load-repeatable', 'loading an image twice gives the same pixels, in a new array each time', async (fail) => {
      for (const split of SPLITS) {
        for (const item of sample(await listing(split, fail))) {
          const a = await item.load();
          const b = await item.load();
          if (a.data === b.data) fail(`${item.id}: two loads returned the same array, so a caller that changes one changes the other`);
          if (a.width !== b.width || a.height !== b.height || firstDifference(a.data, b.data) >= 0) fail(`${item.id}: two loads gave different pixels`);
        }
      }
    }),
  ];
}

/** Runs `imageSourceChecks`; throws a ConformanceError listing every broken rule. */
export function checkImageSource(subject: Subject<'data'>, options: SubjectOptions = {}): Promise<string[]> {
  return runChecks(imageSourceChecks(subject, options), subjectName(subject), contractName('data'));
}
