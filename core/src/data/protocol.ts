import type { ImageItem, ImageSource, LabelledItem, ProtocolCase } from '../types.js';
import { DataSourceError } from './errors.js';
import { NormalAbnormalSource } from './folder.js';
import { seededPermutation } from '../numeric/rng.js';

export interface CaseOptions {
  /** unimodal: one class is normal, the rest anomalous; multimodal: one class is anomalous, the rest normal. */
  mode: 'unimodal' | 'multimodal';
  /** Classes to make a case for, in this order; all classes (in the source's order) when absent or `'all'`. */
  classes?: 'all' | string[];
  /**
   * Caps for quick runs on big data sets: at most `train` normal training images per case, and at most
   * `testPerClass` test images of each label; chosen by a shuffle seeded with `seed`, in the source's order.
   */
  limit?: { train?: number; testPerClass?: number };
  seed?: number;
}

/** At most `n` of `items`, a seeded choice that keeps their order. */
function subsample<T>(items: readonly T[], n: number | undefined, seed: number): T[] {
  if (n === undefined || items.length <= n) return [...items];
  const keep = new Uint8Array(items.length);
  const order = seededPermutation(items.length, seed);
  for (let i = 0; i < n; i++) keep[order[i]] = 1;
  return items.filter((_, i) => keep[i]);
}

function limitTest(test: ImageItem[], perClass: number | undefined, seed: number): ImageItem[] {
  if (perClass === undefined) return test;
  const byLabel = new Map<string, number[]>();
  test.forEach((item, i) => (byLabel.get(item.label) ?? byLabel.set(item.label, []).get(item.label)!).push(i));
  const keep = new Uint8Array(test.length);
  for (const indices of byLabel.values()) for (const i of subsample(indices, perClass, seed)) keep[i] = 1;
  return test.filter((_, i) => keep[i]);
}

function selectClasses(available: string[], wanted: CaseOptions['classes']): string[] {
  if (wanted === undefined || wanted === 'all') return available;
  if (!Array.isArray(wanted) || wanted.length === 0 || !wanted.every((name) => typeof name === 'string')) {
    throw new Error(`protocol classes must be 'all' or a non-empty list of class names, got ${JSON.stringify(wanted)}`);
  }
  const list = available.map((name) => JSON.stringify(name)).join(', ');
  const seen = new Set<string>();
  for (const name of wanted) {
    if (!available.includes(name)) throw new Error(`Unknown class ${JSON.stringify(name)}; available classes: ${list}`);
    if (seen.has(name)) throw new Error(`Class ${JSON.stringify(name)} is listed twice in protocol classes`);
    seen.add(name);
  }
  return [...wanted];
}

function checkCase(c: ProtocolCase): ProtocolCase {
  if (c.train.length === 0) {
    throw new Error(`Protocol case ${c.id}: no training images (the train split has no normal images for this case)`);
  }
  const anomalous = c.test.filter((t) => t.anomalous).length;
  if (anomalous === 0 || anomalous === c.test.length) {
    // AUROC needs both kinds; better to stop before hours of feature extraction than at the metric.
    const missing = anomalous === 0 ? 'anomalous' : 'normal';
    throw new Error(`Protocol case ${c.id}: the test split has no ${missing} images, so AUROC is undefined`);
  }
  return c;
}

/**
 * Builds the evaluation cases of a source.
 *
 * - unimodal, one case per class C: train = the train items of C; test = the whole test split, anomalous when the
 *   label is not C.
 * - multimodal, one case per class C: train = the train items of every other class; test = the whole test split,
 *   anomalous when the label is C, or is not one of the source's classes at all (a novel label that only the test
 *   split has is never normal).
 * - A `NormalAbnormalSource` gives a single case of mode `folder` (train = its normal images; test anomalous when
 *   labelled `abnormal`); it has no classes to hold out, so multimodal is refused.
 *
 * Case ids are `<mode>/<class name>`; the class name is used verbatim (it may contain '/', as in Fashion-MNIST's
 * 'T-shirt/top'), so callers that build paths from a case should use their own safe form of `className`.
 */
export async function makeCases(source: ImageSource, options: CaseOptions): Promise<ProtocolCase[]> {
  const { mode } = options;
  if (mode !== 'unimodal' && mode !== 'multimodal') {
    throw new Error(`protocol mode must be 'unimodal' or 'multimodal', got ${JSON.stringify(mode)}`);
  }
  const [available, train, allTest] = await Promise.all([source.classes(), source.items('train'), source.items('test')]);
  const seed = options.seed ?? 0;
  const test = limitTest(allTest, options.limit?.testPerClass, seed);
  if (source instanceof NormalAbnormalSource) {
    if (mode === 'multimodal') {
      throw new DataSourceError(
        'The normal/abnormal folder layout has a single normal class, so it supports the folder protocol ' +
          "(mode 'unimodal'), not 'multimodal'",
      );
    }
    selectClasses(available, options.classes);
    const labelled = test.map((item): LabelledItem => ({ item, anomalous: item.label !== 'normal' }));
    return [checkCase({ id: 'folder/normal', mode: 'folder', className: 'normal', train: subsample(train, options.limit?.train, seed), test: labelled })];
  }
  const known = new Set(available);
  return selectClasses(available, options.classes).map((className) => {
    const isNormal =
      mode === 'unimodal'
        ? (item: ImageItem) => item.label === className
        : (item: ImageItem) => item.label !== className && known.has(item.label);
    return checkCase({
      id: `${mode}/${className}`,
      mode,
      className,
      train: subsample(train.filter(isNormal), options.limit?.train, seed),
      test: test.map((item) => ({ item, anomalous: !isNormal(item) })),
    });
  });
}

/**
 * Splits `items` into a fit set and a held-out set of `round(fraction * n)` items chosen by a shuffle seeded with
 * `seed` (same inputs, same split). Both keep the input order. When `fraction > 0` and there are at least two
 * items, each side gets at least one.
 */
export function heldOutSplit<T>(items: readonly T[], fraction: number, seed: number): { fit: T[]; heldOut: T[] } {
  if (!Number.isFinite(fraction) || fraction < 0 || fraction >= 1) {
    throw new Error(`heldOutSplit: fraction must be in [0, 1), got ${fraction}`);
  }
  if (!Number.isInteger(seed)) throw new Error(`heldOutSplit: seed must be an integer, got ${seed}`);
  const n = items.length;
  let count = Math.round(fraction * n);
  if (fraction > 0 && n >= 2) count = Math.min(Math.max(count, 1), n - 1);
  const held = new Uint8Array(n);
  const order = seededPermutation(n, seed);
  for (let i = 0; i < count; i++) held[order[i]] = 1;
  const fit: T[] = [];
  const heldOut: T[] = [];
  for (let i = 0; i < n; i++) (held[i] ? heldOut : fit).push(items[i]);
  return { fit, heldOut };
}
