import { basename, join, resolve } from 'node:path';
import type { ImageItem, ImageSource, JsonSchema, RgbImage, Split } from '../types.js';
import { Cached, isFile, readMaybeGzipped } from './container.js';
import { DataSourceError } from './errors.js';
import { classNameList, optionalPath, optionsObject } from './options.js';

/** Fashion-MNIST's class names, in label order. */
export const FASHION_MNIST_CLASSES: readonly string[] = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
];

export interface IdxSourceOptions {
  /** Folder holding the four files under their usual names (`train-images-idx3-ubyte`, optionally `.gz`, ...). */
  dir?: string;
  /** Paths of individual files, overriding the names looked up in `dir`. */
  trainImages?: string;
  trainLabels?: string;
  testImages?: string;
  testLabels?: string;
  /** Names of labels 0, 1, ...; `'fashion-mnist'` for Fashion-MNIST's names. Default: '0' .. '9'. */
  classNames?: string[] | 'fashion-mnist';
}

const FILE_KEYS = ['trainImages', 'trainLabels', 'testImages', 'testLabels'] as const;
type FileKey = (typeof FILE_KEYS)[number];

const idxPath = (description: string): JsonSchema => ({ type: 'string', minLength: 1, resolvePath: true, description });

/** Options of `IdxSource`: `dir`, or the four file paths, or both (explicit paths win). */
export const idxSourceSchema: JsonSchema = {
  type: 'object',
  description: 'MNIST-style IDX files (gzipped or raw): 8-bit grayscale images and their labels.',
  properties: {
    dir: idxPath('Folder holding train-images-idx3-ubyte(.gz), train-labels-idx1-ubyte(.gz), t10k-... files.'),
    trainImages: idxPath('Train images IDX file.'),
    trainLabels: idxPath('Train labels IDX file.'),
    testImages: idxPath('Test images IDX file.'),
    testLabels: idxPath('Test labels IDX file.'),
    classNames: {
      description: "Names of labels 0, 1, ...; 'fashion-mnist' for Fashion-MNIST's names. Default '0'..'9'.",
      oneOf: [
        { const: 'fashion-mnist' },
        { type: 'array', items: { type: 'string', minLength: 1 }, minItems: 1, uniqueItems: true },
      ],
      expected: "'fashion-mnist' or a list of distinct class names",
    },
  },
  additionalProperties: false,
  anyOf: [
    { type: 'object', properties: { dir: true }, required: ['dir'] },
    {
      type: 'object',
      properties: { trainImages: true, trainLabels: true, testImages: true, testLabels: true },
      required: ['trainImages', 'trainLabels', 'testImages', 'testLabels'],
    },
  ],
  expected: "'dir', or all four of trainImages, trainLabels, testImages, testLabels",
};

// Both spellings occur: the original MNIST downloads unpack to `train-images.idx3-ubyte`.
const DEFAULT_NAMES: Record<FileKey, string[]> = {
  trainImages: ['train-images-idx3-ubyte', 'train-images.idx3-ubyte'],
  trainLabels: ['train-labels-idx1-ubyte', 'train-labels.idx1-ubyte'],
  testImages: ['t10k-images-idx3-ubyte', 't10k-images.idx3-ubyte'],
  testLabels: ['t10k-labels-idx1-ubyte', 't10k-labels.idx1-ubyte'],
};

const IMAGES_MAGIC = 0x00000803; // unsigned bytes, 3 dimensions
const LABELS_MAGIC = 0x00000801; // unsigned bytes, 1 dimension

interface IdxSplit {
  imagesFile: string;
  rows: number;
  cols: number;
  pixels: Uint8Array;
  labels: Uint8Array;
}

function hex(value: number): string {
  return `0x${value.toString(16).padStart(8, '0')}`;
}

function parseImages(path: string, bytes: Uint8Array): { count: number; rows: number; cols: number; pixels: Uint8Array } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 16) {
    throw new DataSourceError(`IDX images file ${path} is ${bytes.length} bytes, shorter than its 16-byte header`, path);
  }
  const magic = view.getUint32(0);
  if (magic !== IMAGES_MAGIC) {
    throw new DataSourceError(
      `${path} is not an IDX images file: magic number ${hex(magic)}, expected ${hex(IMAGES_MAGIC)} (unsigned bytes, 3 dimensions)`,
      path,
    );
  }
  const count = view.getUint32(4);
  const rows = view.getUint32(8);
  const cols = view.getUint32(12);
  if (rows === 0 || cols === 0) {
    throw new DataSourceError(`IDX images file ${path} declares images of ${rows}x${cols} pixels`, path);
  }
  const expected = 16 + count * rows * cols;
  if (bytes.length !== expected) {
    throw new DataSourceError(
      `IDX images file ${path} is ${bytes.length} bytes, expected ${expected} for ${count} images of ${rows}x${cols}`,
      path,
    );
  }
  return { count, rows, cols, pixels: bytes.subarray(16) };
}

function parseLabels(path: string, bytes: Uint8Array): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 8) {
    throw new DataSourceError(`IDX labels file ${path} is ${bytes.length} bytes, shorter than its 8-byte header`, path);
  }
  const magic = view.getUint32(0);
  if (magic !== LABELS_MAGIC) {
    throw new DataSourceError(
      `${path} is not an IDX labels file: magic number ${hex(magic)}, expected ${hex(LABELS_MAGIC)} (unsigned bytes, 1 dimension)`,
      path,
    );
  }
  const count = view.getUint32(4);
  if (bytes.length !== 8 + count) {
    throw new DataSourceError(
      `IDX labels file ${path} is ${bytes.length} bytes, expected ${8 + count} for ${count} labels`,
      path,
    );
  }
  return bytes.subarray(8);
}

/**
 * MNIST / Fashion-MNIST style IDX files. Gzip is detected by the magic bytes, not the file name. Each file is read
 * once per split and kept in memory as bytes; an item decodes its image (8-bit grayscale expanded to RGB) only when
 * loaded. Item ids are `<images file name>#<index>`.
 */
export class IdxSource implements ImageSource {
  readonly name = 'idx';
  private readonly dir?: string;
  private readonly explicit: Partial<Record<FileKey, string>> = {};
  private readonly names: string[];
  private readonly defaultNames: boolean;
  private readonly splits: Record<Split, Cached<{ split: IdxSplit; items: ImageItem[] }>>;

  constructor(options: IdxSourceOptions) {
    const record = optionsObject('IdxSource', options, ['dir', ...FILE_KEYS, 'classNames']);
    const dir = optionalPath('IdxSource', record, 'dir');
    this.dir = dir === undefined ? undefined : resolve(dir);
    for (const key of FILE_KEYS) {
      const path = optionalPath('IdxSource', record, key);
      if (path !== undefined) this.explicit[key] = resolve(path);
    }
    if (this.dir === undefined) {
      const missing = FILE_KEYS.filter((key) => this.explicit[key] === undefined);
      if (missing.length > 0) {
        throw new DataSourceError(`IdxSource: give 'dir', or all four file paths (missing: ${missing.join(', ')})`);
      }
    }
    const classNames = record.classNames;
    this.defaultNames = classNames === undefined;
    if (classNames === undefined) this.names = Array.from({ length: 10 }, (_, i) => String(i));
    else if (classNames === 'fashion-mnist') this.names = [...FASHION_MNIST_CLASSES];
    else if (typeof classNames === 'string') {
      throw new DataSourceError(`IdxSource: option 'classNames' must be an array of names or 'fashion-mnist'`);
    } else this.names = classNameList('IdxSource', 'classNames', classNames);
    this.splits = {
      train: new Cached(() => this.loadSplit('train')),
      test: new Cached(() => this.loadSplit('test')),
    };
  }

  async classes(): Promise<string[]> {
    return [...this.names];
  }

  async items(split: Split): Promise<ImageItem[]> {
    return [...(await this.splits[split].get()).items];
  }

  private async resolveFile(key: FileKey): Promise<string> {
    const explicit = this.explicit[key];
    if (explicit !== undefined) return explicit;
    const dir = this.dir as string;
    const candidates = DEFAULT_NAMES[key].flatMap((name) => [name, `${name}.gz`]);
    for (const name of candidates) {
      const path = join(dir, name);
      if (await isFile(path)) return path;
    }
    throw new DataSourceError(`IdxSource: no ${key} file in ${dir} (looked for ${candidates.join(', ')})`, dir);
  }

  private async loadSplit(split: Split): Promise<{ split: IdxSplit; items: ImageItem[] }> {
    const [imagesFile, labelsFile] = await Promise.all([
      this.resolveFile(split === 'train' ? 'trainImages' : 'testImages'),
      this.resolveFile(split === 'train' ? 'trainLabels' : 'testLabels'),
    ]);
    const [imageBytes, labelBytes] = await Promise.all([
      readMaybeGzipped(imagesFile, 'IDX images file'),
      readMaybeGzipped(labelsFile, 'IDX labels file'),
    ]);
    const images = parseImages(imagesFile, imageBytes);
    const labels = parseLabels(labelsFile, labelBytes);
    if (labels.length !== images.count) {
      throw new DataSourceError(
        `IDX ${split} files disagree: ${imagesFile} has ${images.count} images but ${labelsFile} has ${labels.length} labels`,
        labelsFile,
      );
    }
    for (let i = 0; i < labels.length; i++) {
      if (labels[i] >= this.names.length) {
        throw new DataSourceError(
          `IDX labels file ${labelsFile}: label ${labels[i]} at index ${i} has no class name (${this.names.length} names` +
            `${this.defaultNames ? "; pass 'classNames' for data sets with more than 10 classes" : ''})`,
          labelsFile,
        );
      }
    }
    const data: IdxSplit = { imagesFile, rows: images.rows, cols: images.cols, pixels: images.pixels, labels };
    const name = basename(imagesFile);
    const items: ImageItem[] = new Array(labels.length);
    for (let i = 0; i < labels.length; i++) {
      items[i] = { id: `${name}#${i}`, label: this.names[labels[i]], load: async () => grayToRgb(data, i) };
    }
    return { split: data, items };
  }
}

function grayToRgb(split: IdxSplit, index: number): RgbImage {
  const size = split.rows * split.cols;
  const offset = index * size;
  const out = new Float32Array(size * 3);
  for (let p = 0; p < size; p++) {
    const v = split.pixels[offset + p] / 255;
    out[3 * p] = v;
    out[3 * p + 1] = v;
    out[3 * p + 2] = v;
  }
  return { width: split.cols, height: split.rows, data: out };
}
