import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { ImageItem, ImageSource, JsonSchema, RgbImage, Split } from '../types.js';
import { Cached, isFile, readMaybeGzipped } from './container.js';
import { DataSourceError } from './errors.js';
import { oneOf, optionsObject, requiredPath } from './options.js';

export interface CifarSourceOptions {
  /** Folder of the binary version: `cifar-10-batches-bin/` or `cifar-100-binary/`. */
  dir: string;
  variant: 'cifar10' | 'cifar100';
  /** CIFAR-100 only: the 20 superclasses (`coarse`, default) or the 100 classes (`fine`). */
  labels?: 'coarse' | 'fine';
}

const dirOption: JsonSchema = {
  type: 'string',
  minLength: 1,
  // `resolvePath` (a keyword of the config validator) makes a relative path absolute against the config's folder.
  resolvePath: true,
  description: 'Folder of the binary files (cifar-10-batches-bin/ or cifar-100-binary/).',
};
const labelsOption: JsonSchema = {
  enum: ['coarse', 'fine'],
  description: 'CIFAR-100 only: the 20 superclasses (coarse, default) or the 100 classes (fine).',
};

/** Options of `CifarSource`. */
export const cifarSourceSchema: JsonSchema = {
  type: 'object',
  description: 'CIFAR-10 / CIFAR-100, binary version (data_batch_*.bin / train.bin, test batch, label-name files).',
  properties: { dir: dirOption, variant: { enum: ['cifar10', 'cifar100'] }, labels: labelsOption },
  required: ['dir', 'variant'],
  additionalProperties: false,
  if: { properties: { variant: { const: 'cifar10' } }, required: ['variant'] },
  then: { properties: { labels: false } },
};

/** Options of a CIFAR-10 source whose variant is implied (e.g. the built-in `cifar10` data stage). */
export const cifar10SourceSchema: JsonSchema = {
  type: 'object',
  description: 'CIFAR-10, binary version: data_batch_1..5.bin, test_batch.bin, batches.meta.txt.',
  properties: { dir: dirOption },
  required: ['dir'],
  additionalProperties: false,
};

/** Options of a CIFAR-100 source whose variant is implied (e.g. the built-in `cifar100` data stage). */
export const cifar100SourceSchema: JsonSchema = {
  type: 'object',
  description: 'CIFAR-100, binary version: train.bin, test.bin, coarse_label_names.txt, fine_label_names.txt.',
  properties: { dir: dirOption, labels: labelsOption },
  required: ['dir'],
  additionalProperties: false,
};

const PIXELS = 32 * 32;

interface Layout {
  title: string;
  files: Record<Split, string[]>;
  namesFile: string;
  classCount: number;
  recordSize: number;
  /** Byte of the record that holds the label used as the class. */
  labelByte: number;
  /** Bytes before the CHW pixels. */
  header: number;
}

function layoutOf(variant: 'cifar10' | 'cifar100', labels: 'coarse' | 'fine'): Layout {
  if (variant === 'cifar10') {
    return {
      title: 'CIFAR-10',
      files: { train: [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`), test: ['test_batch.bin'] },
      namesFile: 'batches.meta.txt',
      classCount: 10,
      recordSize: 1 + 3 * PIXELS,
      labelByte: 0,
      header: 1,
    };
  }
  return {
    title: 'CIFAR-100',
    files: { train: ['train.bin'], test: ['test.bin'] },
    namesFile: labels === 'fine' ? 'fine_label_names.txt' : 'coarse_label_names.txt',
    classCount: labels === 'fine' ? 100 : 20,
    recordSize: 2 + 3 * PIXELS,
    labelByte: labels === 'fine' ? 1 : 0,
    header: 2,
  };
}

/**
 * CIFAR-10 / CIFAR-100 in the binary version. Each split's files are read once and kept in memory as bytes; items
 * (ids `<file>#<record>`) convert their 32x32 CHW record to RGB floats only when loaded. Class names come from
 * the label-name file when it is present, else they are the label indices.
 */
export class CifarSource implements ImageSource {
  readonly name: 'cifar10' | 'cifar100';
  private readonly dir: string;
  private readonly layout: Layout;
  private readonly names: Cached<string[]>;
  private readonly splits: Record<Split, Cached<ImageItem[]>>;

  constructor(options: CifarSourceOptions) {
    const record = optionsObject('CifarSource', options, ['dir', 'variant', 'labels']);
    this.dir = resolve(requiredPath('CifarSource', record, 'dir'));
    const variant = oneOf('CifarSource', record, 'variant', ['cifar10', 'cifar100'] as const);
    if (variant === undefined) throw new DataSourceError("CifarSource: option 'variant' ('cifar10' or 'cifar100') is required");
    const labels = oneOf('CifarSource', record, 'labels', ['coarse', 'fine'] as const);
    if (variant === 'cifar10' && labels !== undefined) {
      throw new DataSourceError("CifarSource: option 'labels' applies to cifar100 only");
    }
    this.name = variant;
    this.layout = layoutOf(variant, labels ?? 'coarse');
    this.names = new Cached(() => this.loadNames());
    this.splits = {
      train: new Cached(() => this.loadSplit('train')),
      test: new Cached(() => this.loadSplit('test')),
    };
  }

  async classes(): Promise<string[]> {
    return [...(await this.names.get())];
  }

  async items(split: Split): Promise<ImageItem[]> {
    return [...(await this.splits[split].get())];
  }

  private describeLayout(): string {
    const { files, namesFile } = this.layout;
    return `${this.dir}/{${[...files.train, ...files.test].join(',')}} and optionally ${namesFile} (the binary version)`;
  }

  private async loadNames(): Promise<string[]> {
    const { classCount, namesFile, title } = this.layout;
    const path = join(this.dir, namesFile);
    if (!(await isFile(path))) return Array.from({ length: classCount }, (_, i) => String(i));
    const names = (await readFile(path, 'utf8'))
      .split(/\r?\n/)
      .map((line) => line.trim())
      .filter((line) => line.length > 0);
    if (names.length !== classCount) {
      throw new DataSourceError(`${title} label names file ${path} lists ${names.length} names, expected ${classCount}`, path);
    }
    const duplicate = names.find((name, i) => names.indexOf(name) !== i);
    if (duplicate !== undefined) {
      throw new DataSourceError(`${title} label names file ${path} lists '${duplicate}' twice`, path);
    }
    return names;
  }

  private async loadSplit(split: Split): Promise<ImageItem[]> {
    const { title, recordSize, labelByte, header, classCount } = this.layout;
    const names = await this.names.get();
    const items: ImageItem[] = [];
    for (const file of this.layout.files[split]) {
      const path = join(this.dir, file);
      if (!(await isFile(path))) {
        throw new DataSourceError(`${title} file ${path} does not exist; expected layout: ${this.describeLayout()}`, path);
      }
      const bytes = await readMaybeGzipped(path, `${title} file`);
      if (bytes.length === 0 || bytes.length % recordSize !== 0) {
        throw new DataSourceError(
          `${title} file ${path} is ${bytes.length} bytes, not a whole number of ${recordSize}-byte records`,
          path,
        );
      }
      const count = bytes.length / recordSize;
      for (let i = 0; i < count; i++) {
        const label = bytes[i * recordSize + labelByte];
        if (label >= classCount) {
          throw new DataSourceError(
            `${title} file ${path}: record ${i} has label ${label}, expected 0..${classCount - 1}`,
            path,
          );
        }
        const offset = i * recordSize + header;
        items.push({ id: `${file}#${i}`, label: names[label], load: async () => chwToRgb(bytes, offset) });
      }
    }
    return items;
  }
}

/** CIFAR stores each record as three 32x32 planes (R, G, B); RgbImage is interleaved. */
function chwToRgb(bytes: Uint8Array, offset: number): RgbImage {
  const out = new Float32Array(3 * PIXELS);
  for (let c = 0; c < 3; c++) {
    const plane = offset + c * PIXELS;
    for (let p = 0; p < PIXELS; p++) out[3 * p + c] = bytes[plane + p] / 255;
  }
  return { width: 32, height: 32, data: out };
}
