// The page of `transformaly export --web`: scores the image files a person picks or drops with the exported detector,
// in the browser, through onnxruntime-web (WebAssembly). Images are preprocessed by the project's own preprocessing
// module (Pillow-exact resize and normalisation, shipped beside this file), so the model gets the pixels
// `transformaly score` would give it, up to the browser's image decoder (docs/Reference/Export.md).
import * as ort from 'onnxruntime-web/wasm';
import { ResizeNormalize } from '@transformaly/core/preprocess';
import type { PreprocessSpec, RgbImage, Tensor } from '@transformaly/core';

/** What `detector.json` holds: the model's metadata_props, the JSON ones parsed. */
export interface DetectorInfo {
  format: string;
  input: { name: string; type: string; shape: (number | string)[]; layout: string };
  preprocessing: PreprocessSpec & { caller: string };
  threshold: number;
  outputs: { name: string; type: string; description: string }[];
  provenance: { backbone: { id: string; sha256: string; untrained: boolean } };
  stages: string;
}

export interface Scored {
  file: string;
  width: number;
  height: number;
  scores: Record<string, number>;
  anomalous: boolean;
}

const MODEL = './detector.onnx';
const INFO = './detector.json';

let ready: Promise<{ info: DetectorInfo; session: ort.InferenceSession; preprocess: (images: RgbImage[]) => Promise<Tensor> }> | undefined;

/** Loads the detector once: its description, then the onnxruntime-web session. */
export function detector() {
  ready ??= (async () => {
    const info = (await (await fetch(INFO)).json()) as DetectorInfo;
    // Threads need a cross-origin isolated page; a static folder served anywhere has one thread.
    ort.env.wasm.numThreads = globalThis.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
    const session = await ort.InferenceSession.create(MODEL, { executionProviders: ['wasm'] });
    const preprocessor = new ResizeNormalize(info.preprocessing);
    return { info, session, preprocess: (images: RgbImage[]) => preprocessor.run(images) };
  })();
  return ready;
}

/**
 * Decodes an image file to RGB in [0, 1] as the project does: the stored pixel grid (no EXIF rotation), no colour
 * management, alpha dropped. 8-bit samples / 255; the browser decodes 16-bit files to 8 bits.
 */
export async function decode(file: Blob): Promise<RgbImage> {
  const bitmap = await createImageBitmap(file, { imageOrientation: 'none', colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  try {
    const { width, height } = bitmap;
    const canvas = new OffscreenCanvas(width, height);
    const context = canvas.getContext('2d', { willReadFrequently: true })!;
    context.drawImage(bitmap, 0, 0);
    const rgba = context.getImageData(0, 0, width, height).data;
    const data = new Float32Array(width * height * 3);
    for (let p = 0, i = 0; p < rgba.length; p += 4) {
      data[i++] = rgba[p] / 255;
      data[i++] = rgba[p + 1] / 255;
      data[i++] = rgba[p + 2] / 255;
    }
    return { width, height, data };
  } finally {
    bitmap.close();
  }
}

/** The model input of one file: decoded, resized and normalised, [1, 3, H, W]. */
export async function pixelsOf(file: Blob): Promise<Tensor> {
  const { preprocess } = await detector();
  return preprocess([await decode(file)]);
}

/** Scores one file: every output of the model, and the decision. */
export async function score(file: File): Promise<Scored> {
  const { info, session, preprocess } = await detector();
  const image = await decode(file);
  const pixels = await preprocess([image]);
  const out = await session.run({ [info.input.name]: new ort.Tensor('float32', pixels.data, pixels.dims) });
  const scores: Record<string, number> = {};
  for (const { name, type } of info.outputs) if (type === 'float64') scores[name] = Number(out[name].data[0]);
  return { file: file.name, width: image.width, height: image.height, scores, anomalous: Boolean(out.anomalous.data[0]) };
}

// ---------------------------------------------------------------------------------------------------------------
// The page
// ---------------------------------------------------------------------------------------------------------------

const results: Scored[] = [];
const $ = <T extends Element>(selector: string) => document.querySelector(selector) as T;
const format = (v: number) => (Math.abs(v) >= 1e5 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(4) : v.toFixed(4));

function element<K extends keyof HTMLElementTagNameMap>(tag: K, props: Partial<HTMLElementTagNameMap[K]> = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function status(text: string, error = false): void {
  const line = $<HTMLElement>('#status');
  line.textContent = text;
  line.classList.toggle('error', error);
}

async function start(): Promise<void> {
  try {
    status('loading the model…');
    const { info, session } = await detector();
    const [h, w] = info.preprocessing.size;
    $<HTMLElement>('#about').textContent =
      `${info.stages}. Input ${info.input.name} [${info.input.shape.join(', ')}], images resized to ${h}x${w} (${info.preprocessing.resample}). ` +
      `Threshold ${info.threshold}: a combined score below it is anomalous.`;
    if (info.provenance.backbone.untrained) $<HTMLElement>('#untrained').hidden = false;
    const spaces = info.outputs.filter((o) => o.type === 'float64').map((o) => o.name);
    $<HTMLElement>('#results thead tr').append(...spaces.map((s) => element('th', { textContent: s })));
    status(`ready (onnxruntime-web ${ort.env.versions.web}, ${session.inputNames.length} input, ${session.outputNames.length} outputs): pick or drop images`);
  } catch (error) {
    status(`could not load the detector: ${(error as Error).message}`, true);
    return;
  }
  const input = $<HTMLInputElement>('#files');
  input.addEventListener('change', () => void scoreFiles([...(input.files ?? [])]).then(() => (input.value = '')));
  const zone = $<HTMLElement>('#drop');
  zone.addEventListener('dragover', (e) => {
    e.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    void scoreFiles([...(e.dataTransfer?.files ?? [])]);
  });
}

async function scoreFiles(files: File[]): Promise<void> {
  const body = $<HTMLTableSectionElement>('#results tbody');
  const { info } = await detector();
  const spaces = info.outputs.filter((o) => o.type === 'float64').map((o) => o.name);
  for (const [i, file] of files.entries()) {
    status(`scoring ${i + 1} of ${files.length}: ${file.name}`);
    try {
      const scored = await score(file);
      results.push(scored);
      const row = element(
        'tr',
        { className: scored.anomalous ? 'anomalous' : 'normal' },
        element('td', { textContent: file.name }),
        element('td', { textContent: `${scored.width}x${scored.height}` }),
        element('td', { className: 'decision', textContent: scored.anomalous ? 'anomalous' : 'normal' }),
        ...spaces.map((s) => element('td', { className: 'score', textContent: format(scored.scores[s]) })),
      );
      // Full precision for whoever reads the page programmatically.
      for (const s of spaces) row.dataset[s] = String(scored.scores[s]);
      row.dataset.file = file.name;
      row.dataset.anomalous = String(scored.anomalous);
      body.append(row);
    } catch (error) {
      body.append(element('tr', { className: 'failed' }, element('td', { textContent: file.name }), element('td', { colSpan: 2 + spaces.length, textContent: `not scored: ${(error as Error).message}` })));
    }
  }
  drawHistogram(info.threshold);
  const flagged = results.filter((r) => r.anomalous).length;
  status(`${results.length} image${results.length === 1 ? '' : 's'} scored, ${flagged} anomalous`);
  document.body.dataset.scored = String(results.length);
}

const SVG = 'http://www.w3.org/2000/svg';

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attributes: Record<string, string | number>, text?: string): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/**
 * The combined scores in bins, the threshold as a line. The threshold is a bin edge, so every bar lies on one side:
 * left of it the anomalous images (score < threshold), right of it the normal ones.
 */
function drawHistogram(threshold: number): void {
  const figure = $<HTMLElement>('#histogram');
  figure.replaceChildren();
  const values = results.map((r) => r.scores.combined);
  if (values.length === 0) return;
  const width = 640;
  const height = 220;
  const pad = { left: 40, right: 16, top: 20, bottom: 36 };
  const min = Math.min(threshold, ...values);
  const max = Math.max(threshold, ...values);
  const target = Math.max(6, Math.min(30, 3 * Math.ceil(Math.sqrt(values.length))));
  const step = (max - min || Math.abs(max) || 1) / (target - 1);
  const lo = threshold - Math.ceil((threshold - min) / step + 0.5) * step;
  const bins = Math.ceil((max - lo) / step + 0.5);
  const hi = lo + bins * step;
  const counts = new Array<number>(bins).fill(0);
  for (const v of values) counts[Math.min(bins - 1, Math.max(0, Math.floor((v - lo) / step)))]++;
  const top = Math.max(...counts);
  const x = (v: number) => pad.left + ((v - lo) / (hi - lo)) * (width - pad.left - pad.right);
  const y = (c: number) => height - pad.bottom - (c / top) * (height - pad.top - pad.bottom);
  const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', 'aria-label': 'histogram of the combined scores against the threshold' });
  counts.forEach((count, b) => {
    const from = lo + b * step;
    const to = from + step;
    const side = from + step / 2 < threshold ? 'anomalous' : 'normal';
    const bar = svg('rect', { x: x(from) + 1, y: y(count), width: Math.max(1, x(to) - x(from) - 2), height: y(0) - y(count), class: `bar ${side}`, 'data-count': count });
    bar.append(svg('title', {}, `${count} image${count === 1 ? '' : 's'} with a combined score in [${format(from)}, ${format(to)}): ${side}`));
    chart.append(bar);
  });
  chart.append(svg('line', { x1: pad.left, x2: width - pad.right, y1: y(0), y2: y(0), class: 'axis' }));
  const tx = x(threshold);
  chart.append(svg('line', { x1: tx, x2: tx, y1: pad.top - 12, y2: y(0), class: 'threshold', 'data-threshold': threshold }));
  const right = tx > width / 2;
  chart.append(svg('text', { x: right ? tx - 4 : tx + 4, y: pad.top - 6, class: right ? 'label end' : 'label' }, `threshold ${format(threshold)}: anomalous ${right ? '' : '\u2190 '}below${right ? ' \u2190' : ''}`));
  chart.append(svg('text', { x: pad.left, y: height - 10, class: 'label' }, format(lo)));
  chart.append(svg('text', { x: width - pad.right, y: height - 10, class: 'label end' }, format(hi)));
  chart.append(svg('text', { x: width / 2, y: height - 10, class: 'label middle' }, 'combined normality score (higher is more normal)'));
  chart.append(svg('text', { x: 8, y: pad.top + 4, class: 'label' }, String(top)));
  figure.append(chart);
}

void start();
