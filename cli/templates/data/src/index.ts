// An image source for Transformaly: the images a CSV file lists, one per row, `split,label,path`: the split `train`
// or `test`, the class name, and the image file (PNG, JPEG, WebP or TIFF), relative to the listing's folder. The
// classes are the labels of the train split. The listing is read once; each image is decoded only when a batch needs it.
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import {
  DataSourceError,
  decodeImage,
  definePlugin,
  parseCsv,
  pluginPackage,
  type ImageItem,
  type ImageSource,
  type JsonSchema,
  type Split,
} from '@transformaly/core';

export interface CsvListingOptions {
  /** The CSV file (a path in the config is relative to the config file). */
  listing: string;
  /** Images with more pixels than this are refused before they are decoded; default the core's limit (50 megapixels). */
  maxPixels?: number;
}

export const optionsSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['listing'],
  properties: {
    listing: { type: 'string', minLength: 1, resolvePath: true, description: 'CSV file with the columns split,label,path' },
    maxPixels: { type: 'integer', minimum: 1, description: 'refuse images with more pixels than this' },
  },
};

const HEADER = 'split,label,path';

interface Row {
  split: Split;
  label: string;
  path: string;
}

export class CsvListingSource implements ImageSource {
  readonly name = 'csv-listing';
  private rows: Promise<Row[]> | undefined;

  constructor(private readonly options: CsvListingOptions) {
    if (typeof options?.listing !== 'string' || options.listing === '') throw new Error('CsvListingSource: options.listing must name the CSV file');
  }

  async classes(): Promise<string[]> {
    return [...new Set((await this.listing()).filter((row) => row.split === 'train').map((row) => row.label))];
  }

  async items(split: Split): Promise<ImageItem[]> {
    if (split !== 'train' && split !== 'test') throw new Error(`CsvListingSource: no split ${JSON.stringify(split)} (train, test)`);
    const maxPixels = this.options.maxPixels;
    // A new list on every call: the caller may change it.
    return (await this.listing()).filter((row) => row.split === split).map(({ path, label }) => ({ id: path, label, load: () => decodeImage(path, { maxPixels }) }));
  }

  private listing(): Promise<Row[]> {
    if (!this.rows) {
      const rows = readListing(this.options.listing);
      // A listing that failed to read (e.g. written a moment later) is read again on the next call.
      rows.catch(() => {
        if (this.rows === rows) this.rows = undefined;
      });
      this.rows = rows;
    }
    return this.rows;
  }
}

/** The rows of the listing, checked: errors name the file and the line. */
async function readListing(file: string): Promise<Row[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new DataSourceError(`CsvListingSource: cannot read the listing ${file}: ${(error as Error).message}`, file, { cause: error });
  }
  const [header, ...lines] = parseCsv(text.replace(/^\uFEFF/, ''));
  if (header?.join(',') !== HEADER) throw new DataSourceError(`${file}:1: the header must be "${HEADER}", found "${header?.join(',') ?? ''}"`, file);
  const rows: Row[] = [];
  const seen = new Set<string>();
  lines.forEach((fields, i) => {
    const at = `${file}:${i + 2}`;
    if (fields.length === 1 && fields[0] === '') return;
    if (fields.length !== 3) throw new DataSourceError(`${at}: ${fields.length} fields, expected 3 (${HEADER})`, file);
    const [split, label, path] = fields;
    if (split !== 'train' && split !== 'test') throw new DataSourceError(`${at}: split "${split}" is neither train nor test`, file);
    if (label === '' || path === '') throw new DataSourceError(`${at}: the label and the path must not be empty`, file);
    const absolute = resolve(dirname(file), path);
    if (seen.has(`${split}\n${absolute}`)) throw new DataSourceError(`${at}: ${path} is listed twice in the ${split} split`, file);
    seen.add(`${split}\n${absolute}`);
    rows.push({ split, label, path: absolute });
  });
  if (!rows.some((row) => row.split === 'train')) throw new DataSourceError(`${file}: no train image is listed`, file);
  return rows;
}

// Name, version and aliases come from this package's package.json, so they are written once.
const { name, version, aliases } = pluginPackage(import.meta.url);

export const plugin = definePlugin({
  name,
  version,
  aliases,
  description: 'the images a CSV file lists (split,label,path)',
  stages: {
    // Built once per pipeline.
    data: { optionsSchema, create: (options: CsvListingOptions) => new CsvListingSource(options) },
  },
});

export default plugin;
