// The resizing and normalisation of images into model input, with no dependency beyond resize.ts: the same module
// runs in Node (createPreprocessor, on the calling thread or in a worker) and in the browser page of
// `transformaly export --web` (package export `@transformaly/core/preprocess`).
import type { PreprocessSpec, Preprocessor, RgbImage, Tensor } from '../types.js';
import { axisTaps, resizeColumnsToPlanes, resizeRows, toPlanes, type AxisTaps } from './resize.js';

/** The spec checked and copied; throws naming the field at fault. */
export function checkSpec(spec: PreprocessSpec): PreprocessSpec {
  const fail = (what: string): never => {
    throw new Error(`Invalid preprocess spec: ${what}`);
  };
  if (!Array.isArray(spec.size) || spec.size.length !== 2 || !spec.size.every((v) => Number.isInteger(v) && v > 0)) {
    fail(`size must be [height, width] with positive integers, got ${JSON.stringify(spec.size)}`);
  }
  if (!['bilinear', 'bicubic', 'nearest'].includes(spec.resample)) {
    fail(`resample must be 'bilinear', 'bicubic' or 'nearest', got ${JSON.stringify(spec.resample)}`);
  }
  if (!Array.isArray(spec.mean) || spec.mean.length !== 3 || !spec.mean.every(Number.isFinite)) {
    fail(`mean must be three finite numbers, got ${JSON.stringify(spec.mean)}`);
  }
  if (!Array.isArray(spec.std) || spec.std.length !== 3 || !spec.std.every((v) => Number.isFinite(v) && v > 0)) {
    fail(`std must be three positive numbers, got ${JSON.stringify(spec.std)}`);
  }
  return {
    size: [spec.size[0], spec.size[1]],
    resample: spec.resample,
    mean: [spec.mean[0], spec.mean[1], spec.mean[2]],
    std: [spec.std[0], spec.std[1], spec.std[2]],
  };
}

// Data sets of mixed image sizes would otherwise grow the tap cache without bound.
const TAP_CACHE_LIMIT = 64;

/** The resizing and normalisation itself, on the calling thread. */
export class ResizeNormalize implements Preprocessor {
  readonly spec: PreprocessSpec;
  private readonly taps = new Map<string, AxisTaps>();

  constructor(spec: PreprocessSpec) {
    this.spec = checkSpec(spec);
  }

  async run(images: RgbImage[]): Promise<Tensor> {
    return this.runSync(images);
  }

  runSync(images: RgbImage[]): Tensor {
    const [height, width] = this.spec.size;
    const { mean, std } = this.spec;
    const plane = height * width;
    const data = new Float32Array(images.length * 3 * plane);
    const acc = new Float64Array(width * 3);
    images.forEach((image, n) => {
      if (
        !Number.isInteger(image.width) ||
        !Number.isInteger(image.height) ||
        image.width < 1 ||
        image.height < 1 ||
        image.data.length !== image.width * image.height * 3
      ) {
        throw new Error(
          `Preprocessor: image ${n} of the batch has ${image.data.length} values for ${image.width}x${image.height} RGB ` +
            `(expected width * height * 3)`,
        );
      }
      const offset = n * 3 * plane;
      // Images already at the target size pass through unresampled, as PIL returns a copy for a same-size resize.
      const rows = image.width === width ? image.data : resizeRows(image.data, image.height, this.tapsFor(image.width, width));
      if (image.height === height) toPlanes(rows, plane, data, offset, mean, std);
      else resizeColumnsToPlanes(rows, width, this.tapsFor(image.height, height), data, offset, mean, std, acc);
    });
    return { dims: [images.length, 3, height, width], data };
  }

  private tapsFor(inSize: number, outSize: number): AxisTaps {
    const key = `${inSize}>${outSize}`;
    let taps = this.taps.get(key);
    if (taps) {
      // Refresh recency so the sizes in use stay cached.
      this.taps.delete(key);
    } else {
      taps = axisTaps(inSize, outSize, this.spec.resample);
      if (this.taps.size >= TAP_CACHE_LIMIT) this.taps.delete(this.taps.keys().next().value as string);
    }
    this.taps.set(key, taps);
    return taps;
  }
}
