import { dirname, isAbsolute, relative, resolve } from 'node:path';
import { ensureWritableFolder, exportDetector, openDetector, type ExportedDetector, type ProgressReporter } from '@transformaly/core';
import { givenPlugins, pluginPair } from './score.js';

export interface ExportCommandOptions {
  detector: string;
  out?: string;
  preprocess?: boolean;
  web?: string;
  /** `NAME=PATH` pairs, as `score --plugin`. */
  plugin?: string[];
}

/**
 * Writes a saved detector as one ONNX model (`--out`) and/or a static web page that scores images with it in a
 * browser (`--web`); prints what the model expects and returns.
 */
export async function exportCommand(options: ExportCommandOptions, progress: ProgressReporter): Promise<void> {
  if (options.out === undefined && options.web === undefined) throw new Error('export needs --out FILE (the ONNX model) or --web DIR (a web page folder), or both');
  if (options.preprocess && options.out === undefined) throw new Error('--preprocess changes the input of the model written by --out; the web page always preprocesses itself');
  const out = options.out === undefined ? undefined : resolve(options.out);
  if (out) await ensureWritableFolder(dirname(out), 'the folder of --out');
  const plugins = await givenPlugins((options.plugin ?? []).map(pluginPair));
  const opened = await openDetector(options.detector, { plugins, progress });
  try {
    if (out) {
      const task = progress.task('exporting the detector');
      const exported = await exportDetector(opened, { out, preprocess: options.preprocess });
      task.done();
      process.stdout.write(describeExport(exported));
    }
    if (options.web !== undefined) {
      const { writeWebFolder } = await import('@transformaly/web');
      const task = progress.task('writing the web page');
      const web = await writeWebFolder(options.web, opened);
      task.done();
      process.stdout.write(
        `wrote the web page ${shown(web.dir)} (${web.files.length} files, model ${megabytes(web.model.bytes)}, onnxruntime-web ${web.onnxruntimeWeb}):\n` +
          `  serve it with any static file server and open index.html, e.g. python3 -m http.server -d ${shown(web.dir)} 8000\n`,
      );
      if (!out) process.stdout.write(describeExport(web.model));
    }
  } finally {
    await opened.dispose();
  }
}

const megabytes = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MB`;

/** A path as the user would type it: relative to the current folder when inside it. */
function shown(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) ? rel : path;
}

/** What the exported model records in its metadata_props, as the lines the command prints. */
export function describeExport(exported: ExportedDetector): string {
  const meta = exported.metadata;
  const input = exported.input;
  const preprocessing = JSON.parse(meta.preprocessing) as { caller: string; graph: string };
  const provenance = JSON.parse(meta.provenance) as { backbone: { id: string; sha256: string; untrained: boolean } };
  const lines = [
    `wrote ${shown(exported.file)} (${megabytes(exported.bytes)}${exported.dataFile ? `; weights in ${shown(exported.dataFile)}` : ''})`,
    `  input          ${input.name}: ${input.type} [${input.shape.join(', ')}] (${input.layout})`,
    `  caller does    ${preprocessing.caller}`,
    `  graph does     ${preprocessing.graph}`,
    ...exported.outputs.map((o, i) => `  ${i === 0 ? 'outputs' : ''.padEnd(7)}        ${o.name}: ${o.type} [${o.shape.join(', ')}], ${o.description}`),
    `  threshold      ${exported.threshold}`,
    `  stages         ${meta.stages}`,
    `  backbone       ${provenance.backbone.id}${provenance.backbone.untrained ? ' (UNTRAINED: random weights, for tests and smoke runs only)' : ''}, sha256 ${provenance.backbone.sha256}`,
    `  metadata_props ${Object.keys(meta).join(', ')}`,
  ];
  return `${lines.join('\n')}\n`;
}
