import { join, resolve } from 'node:path';
import type { ImageItem, ImageSource, JsonSchema, Split } from '../types.js';
import { DEFAULT_MAX_PIXELS, decodeImage } from './decode.js';
import { DataSourceError } from './errors.js';
import { EXTENSION_LIST, listImages, subfolders } from './files.js';
import { optionalPath, optionalPositiveInteger, optionsObject, requiredPath } from './options.js';

export interface FolderSourceOptions {
  /** Folder holding `train/<class>/...` and `test/<class>/...`. */
  root?: string;
  /** The train split's folder (one subfolder per class), instead of `root`. */
  train?: string;
  /** The test split's folder (one subfolder per class), instead of `root`. */
  test?: string;
  /** Images whose header declares more pixels than this are refused before decoding; default 50 megapixels. */
  maxPixels?: number;
}

// `resolvePath` (a keyword of the config validator) makes a relative path absolute against the config file's folder.
const pathString = (description: string): JsonSchema => ({ type: 'string', minLength: 1, resolvePath: true, description });
const maxPixelsSchema: JsonSchema = {
  type: 'integer',
  minimum: 1,
  description: `Images whose header declares more pixels (width x height) are refused before decoding, to bound memory; default: ${DEFAULT_MAX_PIXELS}.`,
};

/** Options of `FolderSource`: either `root`, or both `train` and `test`. */
export const folderSourceSchema: JsonSchema = {
  type: 'object',
  description: 'Images in one subfolder per class: root/train/<class>/** and root/test/<class>/**.',
  properties: {
    root: pathString('Folder holding train/ and test/.'),
    train: pathString('Train folder (one subfolder per class); use with test instead of root.'),
    test: pathString('Test folder (one subfolder per class); use with train instead of root.'),
    maxPixels: maxPixelsSchema,
  },
  additionalProperties: false,
  // Each branch names its properties itself: strict ajv (strictRequired) wants `required` keys defined alongside.
  oneOf: [
    { type: 'object', properties: { root: true, train: false, test: false }, required: ['root'] },
    { type: 'object', properties: { root: false, train: true, test: true }, required: ['train', 'test'] },
  ],
  expected: "either 'root' (holding train/ and test/), or both 'train' and 'test', not both forms",
};

export interface NormalAbnormalSourceOptions {
  /** Folder of normal training images (searched recursively). */
  train: string;
  /** Folder with `normal/` and `abnormal/` subfolders. */
  test: string;
  /** Images whose header declares more pixels than this are refused before decoding; default 50 megapixels. */
  maxPixels?: number;
}

/** Options of `NormalAbnormalSource`. */
export const normalAbnormalSourceSchema: JsonSchema = {
  type: 'object',
  description: 'Normal training images in one folder; test images in test/normal and test/abnormal.',
  properties: {
    train: pathString('Folder of normal training images (searched recursively).'),
    test: pathString('Folder with normal/ and abnormal/ subfolders.'),
    maxPixels: maxPixelsSchema,
  },
  required: ['train', 'test'],
  additionalProperties: false,
};

function fileItem(path: string, label: string, maxPixels: number | undefined): ImageItem {
  return { id: path, label, load: () => decodeImage(path, { maxPixels }) };
}

/**
 * Labelled images in one subfolder per class, for the unimodal and multimodal protocols:
 * `root/train/<class>/**` and `root/test/<class>/**` (or separate `train` and `test` folders). Images are found
 * recursively inside each class folder; hidden files and folders are ignored; items are ordered by class, then
 * lexicographically by path. The classes are the train split's class folders; a class folder that only the test
 * split has labels novel images, which every protocol case counts as anomalous.
 */
export class FolderSource implements ImageSource {
  readonly name = 'folder';
  private readonly folders: Record<Split, string>;
  private readonly layout: string;
  private readonly maxPixels: number | undefined;
  private readonly listings = new Map<Split, Promise<Map<string, string[]>>>();

  constructor(options: FolderSourceOptions) {
    const record = optionsObject('FolderSource', options, ['root', 'train', 'test', 'maxPixels']);
    this.maxPixels = optionalPositiveInteger('FolderSource', record, 'maxPixels');
    const root = optionalPath('FolderSource', record, 'root');
    const train = optionalPath('FolderSource', record, 'train');
    const test = optionalPath('FolderSource', record, 'test');
    if (root !== undefined && (train !== undefined || test !== undefined)) {
      throw new DataSourceError("FolderSource: give either 'root' or both 'train' and 'test', not both forms");
    }
    if (root !== undefined) {
      const base = resolve(root);
      this.folders = { train: join(base, 'train'), test: join(base, 'test') };
      this.layout = `${base}/train/<class>/<images> and ${base}/test/<class>/<images>, one subfolder per class (${EXTENSION_LIST})`;
    } else if (train !== undefined && test !== undefined) {
      this.folders = { train: resolve(train), test: resolve(test) };
      this.layout = `${this.folders.train}/<class>/<images> and ${this.folders.test}/<class>/<images>, one subfolder per class (${EXTENSION_LIST})`;
    } else {
      throw new DataSourceError("FolderSource: give 'root' (holding train/ and test/), or both 'train' and 'test'");
    }
  }

  async classes(): Promise<string[]> {
    return [...(await this.listing('train')).keys()];
  }

  async items(split: Split): Promise<ImageItem[]> {
    const listing = await this.listing(split);
    const items: ImageItem[] = [];
    for (const [label, paths] of listing) for (const path of paths) items.push(fileItem(path, label, this.maxPixels));
    return items;
  }

  private listing(split: Split): Promise<Map<string, string[]>> {
    let listing = this.listings.get(split);
    if (!listing) {
      listing = this.list(this.folders[split]);
      this.listings.set(split, listing);
      // A failed listing (e.g. a folder created a moment later) is retried on the next call, not cached.
      listing.catch(() => this.listings.delete(split));
    }
    return listing;
  }

  private async list(folder: string): Promise<Map<string, string[]>> {
    const { folders, images } = await subfolders(folder, this.layout);
    if (images.length > 0) {
      throw new DataSourceError(
        `${folder} holds images directly (e.g. ${images[0]}); FolderSource expects them inside one subfolder per class: ${this.layout}`,
        folder,
      );
    }
    if (folders.length === 0) {
      throw new DataSourceError(`${folder} has no class subfolders; expected layout: ${this.layout}`, folder);
    }
    const listing = new Map<string, string[]>();
    for (const name of folders) listing.set(name, await listImages(join(folder, name), this.layout));
    return listing;
  }
}

/**
 * The "folder" protocol: a folder of normal training images, and a test folder split into `normal/` and
 * `abnormal/`. The only class is `normal`; test items are labelled `normal` or `abnormal`.
 */
export class NormalAbnormalSource implements ImageSource {
  readonly name = 'normal-abnormal';
  private readonly train: string;
  private readonly test: string;
  private readonly layout: string;
  private readonly maxPixels: number | undefined;
  private readonly listings = new Map<Split, Promise<ImageItem[]>>();

  constructor(options: NormalAbnormalSourceOptions) {
    const record = optionsObject('NormalAbnormalSource', options, ['train', 'test', 'maxPixels']);
    this.maxPixels = optionalPositiveInteger('NormalAbnormalSource', record, 'maxPixels');
    this.train = resolve(requiredPath('NormalAbnormalSource', record, 'train'));
    this.test = resolve(requiredPath('NormalAbnormalSource', record, 'test'));
    this.layout = `${this.train}/<normal images> and ${this.test}/normal/<images>, ${this.test}/abnormal/<images> (${EXTENSION_LIST})`;
  }

  async classes(): Promise<string[]> {
    return ['normal'];
  }

  async items(split: Split): Promise<ImageItem[]> {
    let listing = this.listings.get(split);
    if (!listing) {
      listing = split === 'train' ? this.listTrain() : this.listTest();
      this.listings.set(split, listing);
      listing.catch(() => this.listings.delete(split));
    }
    return [...(await listing)];
  }

  private async listTrain(): Promise<ImageItem[]> {
    return (await listImages(this.train, this.layout)).map((path) => fileItem(path, 'normal', this.maxPixels));
  }

  private async listTest(): Promise<ImageItem[]> {
    const { folders, images } = await subfolders(this.test, this.layout);
    const unexpected = folders.filter((name) => name !== 'normal' && name !== 'abnormal');
    if (images.length > 0 || unexpected.length > 0) {
      const found = unexpected.length > 0 ? `subfolder ${unexpected[0]}` : `image ${images[0]}`;
      throw new DataSourceError(
        `${this.test} should hold only normal/ and abnormal/ subfolders, but has ${found}; expected layout: ${this.layout}`,
        this.test,
      );
    }
    const items: ImageItem[] = [];
    for (const label of ['normal', 'abnormal']) {
      for (const path of await listImages(join(this.test, label), this.layout)) items.push(fileItem(path, label, this.maxPixels));
    }
    return items;
  }
}
