import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import {
  openSafetensors,
  type PreprocessSpec,
  type ProgressReporter,
  type Resample,
  type SafetensorsEntry,
  type SafetensorsFile,
  type Tensor,
} from '@transformaly/core';
import { checkArch, gridOf, type VitArch, type VitWeights } from './arch.js';
import { resolveHubCheckpoint } from './hub.js';
import { conversionSnippet, PICKLE_EXTENSIONS } from './pickle.js';

/** A checkpoint that cannot be used as a ViT: names the file and, where one is at fault, the tensor. */
export class CheckpointError extends Error {
  override readonly name = 'CheckpointError';
}

export type CheckpointLayout = 'hf' | 'timm';

export interface ArchOverrides {
  /** Attention heads, for checkpoints whose config does not say (a bare timm file). */
  heads?: number;
  /** LayerNorm epsilon, for checkpoints whose config does not say (timm's default 1e-6 otherwise). */
  layerNormEps?: number;
  /**
   * The image size the caller wants; used here only to read the grid of position embeddings that are not square
   * (when it fits them). Resampling to another size is the loader's business.
   */
  imageSize?: [number, number];
  /** The caller's resampling filter: the checkpoint's is then not needed, and one this backbone lacks is no error. */
  resample?: Resample;
}

export interface VitCheckpoint {
  /** Weight files read, in order. */
  files: string[];
  /** Folder holding the weight files and configs. */
  dir: string;
  layout: CheckpointLayout;
  arch: VitArch;
  weights: VitWeights;
  /** Preprocessing the checkpoint's configs specify (fields they leave out are absent). */
  preprocess: Partial<PreprocessSpec>;
  /** sha256 of the weight file; for sharded checkpoints, of the `sha256  name` lines of its shards. */
  sha256: string;
}

export interface HubLookup {
  cacheDir?: string;
  offline?: boolean;
  endpoint?: string;
  revision?: string;
  progress?: ProgressReporter;
}

const INDEX_FILE = 'model.safetensors.index.json';

/**
 * Turns a checkpoint reference into a local file or folder: an existing path as is, else a Hugging Face hub id
 * (`org/name`, optionally `hf-hub:org/name`) through the hub cache.
 */
export async function locateCheckpoint(checkpoint: string, hub: HubLookup = {}): Promise<string> {
  const path = resolve(checkpoint);
  if (await exists(path)) return path;
  const repo = checkpoint.replace(/^hf-hub:/, '');
  if (/^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/.test(repo) && !checkpoint.startsWith('.')) {
    return resolveHubCheckpoint(repo, hub);
  }
  throw new CheckpointError(`checkpoint ${checkpoint}: no such file or folder, and not a hub id of the form org/name`);
}

/** The refusal for pickle files, with the conversion to run instead. */
export function pickleRefusal(path: string): CheckpointError {
  const target = join(dirname(path), `${basename(path, extname(path))}.safetensors`);
  return new CheckpointError(
    `${path}: PyTorch pickle checkpoints (${[...PICKLE_EXTENSIONS].join(', ')}) are not read, because unpickling can run arbitrary code. ` +
      'Convert it to safetensors once in Python (pip install torch safetensors), then pass the new file:\n' +
      conversionSnippet(path, target),
  );
}

/** Finds the weight files of a local checkpoint: a .safetensors file, an index, or a folder holding either. */
export async function checkpointFiles(path: string): Promise<{ dir: string; files: string[]; shardOf?: Map<string, string> }> {
  const info = await stat(path);
  if (info.isDirectory()) {
    const entries = (await readdir(path)).sort();
    if (entries.includes('model.safetensors')) return checkpointFiles(join(path, 'model.safetensors'));
    if (entries.includes(INDEX_FILE)) return checkpointFiles(join(path, INDEX_FILE));
    const safetensors = entries.filter((e) => e.endsWith('.safetensors'));
    if (safetensors.length === 1) return checkpointFiles(join(path, safetensors[0]));
    const pickle = entries.find((e) => PICKLE_EXTENSIONS.has(extname(e)));
    if (safetensors.length === 0 && pickle) throw pickleRefusal(join(path, pickle));
    throw new CheckpointError(
      safetensors.length === 0
        ? `${path}: no model.safetensors, ${INDEX_FILE} or other .safetensors file in this folder`
        : `${path}: several .safetensors files (${safetensors.join(', ')}) and no ${INDEX_FILE} saying how they fit together; pass one file`,
    );
  }
  if (PICKLE_EXTENSIONS.has(extname(path))) throw pickleRefusal(path);
  if (path.endsWith('.index.json')) {
    const index = (await readJson(path)) as { weight_map?: Record<string, string> } | undefined;
    const map = index?.weight_map;
    if (!map || typeof map !== 'object' || Object.keys(map).length === 0) {
      throw new CheckpointError(`${path}: expected an object "weight_map" from tensor names to shard files`);
    }
    const dir = dirname(path);
    const shardOf = new Map<string, string>();
    for (const [tensor, file] of Object.entries(map)) {
      if (typeof file !== 'string' || file.includes('..') || file.startsWith('/')) {
        throw new CheckpointError(`${path}: weight_map entry for "${tensor}" is ${JSON.stringify(file)}, not a shard file name`);
      }
      shardOf.set(tensor, join(dir, file));
    }
    return { dir, files: [...new Set(shardOf.values())].sort(), shardOf };
  }
  if (!path.endsWith('.safetensors')) {
    throw new CheckpointError(`${path}: expected a .safetensors file, a ${INDEX_FILE}, or a folder holding one`);
  }
  return { dir: dirname(path), files: [path] };
}

/** Every tensor of a (possibly sharded) checkpoint, read lazily. */
class TensorCatalog {
  private constructor(
    readonly files: SafetensorsFile[],
    private readonly where: Map<string, { file: SafetensorsFile; entry: SafetensorsEntry }>,
  ) {}

  static async open(files: string[], shardOf?: Map<string, string>): Promise<TensorCatalog> {
    const opened: SafetensorsFile[] = [];
    try {
      for (const path of files) opened.push(await openSafetensors(path));
    } catch (error) {
      await Promise.all(opened.map((f) => f.close()));
      throw error;
    }
    const where = new Map<string, { file: SafetensorsFile; entry: SafetensorsEntry }>();
    const catalog = new TensorCatalog(opened, where);
    try {
      if (shardOf) {
        const byPath = new Map(opened.map((f) => [f.path, f]));
        for (const [tensor, path] of shardOf) {
          const file = byPath.get(path)!;
          const entry = file.tensors.get(tensor);
          if (!entry) throw new CheckpointError(`${path}: tensor "${tensor}" is listed in ${INDEX_FILE} but missing from this shard`);
          where.set(tensor, { file, entry });
        }
      } else {
        for (const file of opened) for (const [tensor, entry] of file.tensors) where.set(tensor, { file, entry });
      }
    } catch (error) {
      await catalog.close();
      throw error;
    }
    return catalog;
  }

  names(): string[] {
    return [...this.where.keys()];
  }

  has(name: string): boolean {
    return this.where.has(name);
  }

  shape(name: string): number[] | undefined {
    return this.where.get(name)?.entry.shape;
  }

  fileOf(name: string): string {
    return this.where.get(name)?.file.path ?? this.files.map((f) => f.path).join(', ');
  }

  async read(name: string): Promise<Float32Array> {
    const found = this.where.get(name);
    if (!found) throw new CheckpointError(`${this.fileOf(name)}: tensor "${name}" is missing`);
    if (!['F32', 'F16', 'BF16', 'F64'].includes(found.entry.dtype)) {
      throw new CheckpointError(`${found.file.path}: tensor "${name}" has dtype ${found.entry.dtype}; expected F32, F16 or BF16`);
    }
    const { data } = await found.file.read(name);
    return data instanceof Float32Array ? data : Float32Array.from(data as Float64Array);
  }

  async close(): Promise<void> {
    await Promise.all(this.files.map((f) => f.close()));
  }
}

/** One tensor of the timm layout and where it comes from: one source tensor, or several concatenated on axis 0. */
interface Source {
  target: string;
  parts: string[];
  /** Expected shape of each part. */
  dims: number[];
}

function plan(layout: CheckpointLayout, prefix: string, arch: VitArch): Source[] {
  const { width: d, mlpDim: m, patchSize: p } = arch;
  const tokens = gridOf(arch).tokens;
  const sources: Source[] = [];
  const add = (target: string, part: string | string[], dims: number[]) =>
    sources.push({ target, parts: (Array.isArray(part) ? part : [part]).map((n) => prefix + n), dims });
  const hf = layout === 'hf';
  add('cls_token', hf ? 'embeddings.cls_token' : 'cls_token', [1, 1, d]);
  add('pos_embed', hf ? 'embeddings.position_embeddings' : 'pos_embed', [1, tokens, d]);
  add('patch_embed.proj.weight', hf ? 'embeddings.patch_embeddings.projection.weight' : 'patch_embed.proj.weight', [d, 3, p, p]);
  add('patch_embed.proj.bias', hf ? 'embeddings.patch_embeddings.projection.bias' : 'patch_embed.proj.bias', [d]);
  for (let i = 0; i < arch.depth; i++) {
    const b = `blocks.${i}.`;
    const l = `encoder.layer.${i}.`;
    for (const kind of ['weight', 'bias']) {
      add(`${b}norm1.${kind}`, hf ? `${l}layernorm_before.${kind}` : `${b}norm1.${kind}`, [d]);
      if (kind === 'weight' || arch.qkvBias) {
        add(
          `${b}attn.qkv.${kind}`,
          hf ? ['query', 'key', 'value'].map((q) => `${l}attention.attention.${q}.${kind}`) : `${b}attn.qkv.${kind}`,
          hf ? (kind === 'weight' ? [d, d] : [d]) : kind === 'weight' ? [3 * d, d] : [3 * d],
        );
      }
      add(`${b}attn.proj.${kind}`, hf ? `${l}attention.output.dense.${kind}` : `${b}attn.proj.${kind}`, kind === 'weight' ? [d, d] : [d]);
      add(`${b}norm2.${kind}`, hf ? `${l}layernorm_after.${kind}` : `${b}norm2.${kind}`, [d]);
      add(`${b}mlp.fc1.${kind}`, hf ? `${l}intermediate.dense.${kind}` : `${b}mlp.fc1.${kind}`, kind === 'weight' ? [m, d] : [m]);
      add(`${b}mlp.fc2.${kind}`, hf ? `${l}output.dense.${kind}` : `${b}mlp.fc2.${kind}`, kind === 'weight' ? [d, m] : [d]);
    }
  }
  add('norm.weight', hf ? 'layernorm.weight' : 'norm.weight', [d]);
  add('norm.bias', hf ? 'layernorm.bias' : 'norm.bias', [d]);
  return sources;
}

/** Tensors a standard ViT checkpoint may carry that the backbone does not use (classifier heads, poolers). */
function ignorable(layout: CheckpointLayout, name: string): boolean {
  if (layout === 'hf') return /^(classifier|pooler)\.|^(vit\.)?(pooler\.|embeddings\.mask_token$)/.test(name);
  return /^(head|fc_norm)\./.test(name);
}

function detectLayout(names: string[], file: string): { layout: CheckpointLayout; prefix: string } {
  const set = new Set(names);
  for (const prefix of ['', 'vit.']) if (set.has(`${prefix}embeddings.cls_token`)) return { layout: 'hf', prefix };
  if (set.has('cls_token') && names.some((n) => n.startsWith('blocks.'))) return { layout: 'timm', prefix: '' };
  const sample = names.slice(0, 6).join(', ');
  throw new CheckpointError(
    `${file}: not a ViT checkpoint in the Hugging Face layout (embeddings.cls_token, encoder.layer.N...) or the timm layout ` +
      `(cls_token, blocks.N...); its tensors start ${sample}${names.length > 6 ? ', ...' : ''}`,
  );
}

async function readJson(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CheckpointError(`${path}: cannot read: ${(error as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new CheckpointError(`${path}: not valid JSON: ${(error as Error).message}`);
  }
}

type Json = Record<string, unknown>;

function field<T>(json: Json, key: string, file: string, check: (v: unknown) => v is T, expected: string): T | undefined {
  const value = json[key];
  if (value === undefined || value === null) return undefined;
  if (!check(value)) throw new CheckpointError(`${file}: "${key}" is ${JSON.stringify(value)}; expected ${expected}`);
  return value;
}
const isPositiveInt = (v: unknown): v is number => Number.isInteger(v) && (v as number) > 0;
const isPositive = (v: unknown): v is number => typeof v === 'number' && v > 0;
const isBool = (v: unknown): v is boolean => typeof v === 'boolean';
const isString = (v: unknown): v is string => typeof v === 'string';
const isTriple = (v: unknown): v is [number, number, number] => Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number');

function sizePair(value: unknown, file: string, key: string): [number, number] | undefined {
  if (value === undefined || value === null) return undefined;
  if (isPositiveInt(value)) return [value, value];
  if (Array.isArray(value) && value.length === 2 && value.every(isPositiveInt)) return [value[0], value[1]];
  if (typeof value === 'object') {
    const v = value as Json;
    if (isPositiveInt(v.height) && isPositiveInt(v.width)) return [v.height, v.width];
    if (isPositiveInt(v.shortest_edge)) return [v.shortest_edge, v.shortest_edge];
  }
  throw new CheckpointError(`${file}: "${key}" is ${JSON.stringify(value)}; expected a size (an integer, [h, w] or {height, width})`);
}

/** PIL's resampling codes as used by Hugging Face image processors. */
const PIL_RESAMPLE: Record<number, Resample> = { 0: 'nearest', 2: 'bilinear', 3: 'bicubic' };

/**
 * Preprocessing from a Hugging Face `preprocessor_config.json`. With `resampleGiven` (the resample option is set)
 * its resampling filter is not read.
 */
export function hfPreprocess(json: Json, file: string, resampleGiven = false): Partial<PreprocessSpec> {
  const spec: Partial<PreprocessSpec> = {};
  if (json.do_resize !== false) {
    const size = sizePair(json.size, file, 'size');
    if (size) spec.size = size;
    const code = json.resample;
    if (code !== undefined && code !== null && !resampleGiven) {
      const resample = PIL_RESAMPLE[code as number];
      if (!resample) {
        throw new CheckpointError(`${file}: "resample" is ${JSON.stringify(code)}; supported PIL codes are 0 (nearest), 2 (bilinear), 3 (bicubic) — set the resample option to override`);
      }
      spec.resample = resample;
    }
  }
  if (json.do_normalize === false) {
    spec.mean = [0, 0, 0];
    spec.std = [1, 1, 1];
  } else {
    spec.mean = field(json, 'image_mean', file, isTriple, 'three numbers');
    spec.std = field(json, 'image_std', file, isTriple, 'three numbers');
  }
  return dropUndefined(spec);
}

/**
 * Preprocessing from a timm hub `config.json` (its `pretrained_cfg`). With `resampleGiven` (the resample option is
 * set) its interpolation is not read.
 */
export function timmPreprocess(json: Json, file: string, resampleGiven = false): Partial<PreprocessSpec> {
  const cfg = json.pretrained_cfg;
  if (cfg === undefined || cfg === null || typeof cfg !== 'object') return {};
  const c = cfg as Json;
  const spec: Partial<PreprocessSpec> = {};
  // input_size is what the position embeddings were trained at; test_input_size would need them resampled.
  const input = c.input_size;
  if (input !== undefined) {
    if (!Array.isArray(input) || input.length !== 3 || !input.every(isPositiveInt)) {
      throw new CheckpointError(`${file}: pretrained_cfg.input_size is ${JSON.stringify(input)}; expected [3, height, width]`);
    }
    spec.size = [input[1], input[2]];
  }
  const interpolation = c.interpolation;
  if (interpolation !== undefined && !resampleGiven) {
    if (interpolation !== 'bilinear' && interpolation !== 'bicubic' && interpolation !== 'nearest') {
      throw new CheckpointError(`${file}: pretrained_cfg.interpolation is ${JSON.stringify(interpolation)}; expected bilinear, bicubic or nearest — set the resample option to override`);
    }
    spec.resample = interpolation;
  }
  spec.mean = field(c, 'mean', `${file} (pretrained_cfg)`, isTriple, 'three numbers');
  spec.std = field(c, 'std', `${file} (pretrained_cfg)`, isTriple, 'three numbers');
  return dropUndefined(spec);
}

function dropUndefined<T extends object>(value: T): T {
  for (const key of Object.keys(value) as (keyof T)[]) if (value[key] === undefined) delete value[key];
  return value;
}

/** Heads of timm's named ViT sizes, for configs that name the architecture but not `num_heads`. */
const TIMM_SIZE_HEADS: Record<string, number> = { tiny: 3, small: 6, medium: 8, base: 12, large: 16, huge: 16, giant: 16, gigantic: 16 };

/** Heads from a timm config: `model_args.num_heads`, else the size in the architecture name (vit_base_... -> 12). */
export function timmHeads(json: Json): number | undefined {
  const args = json.model_args as Json | undefined;
  if (args && isPositiveInt(args.num_heads)) return args.num_heads;
  const name = (json.architecture ?? (json.pretrained_cfg as Json | undefined)?.architecture) as string | undefined;
  const match = typeof name === 'string' ? /^(?:vit|deit)_(tiny|small|medium|base|large|huge|giant|gigantic)_/.exec(name) : null;
  return match ? TIMM_SIZE_HEADS[match[1]] : undefined;
}

function countBlocks(names: string[], pattern: RegExp, file: string): number {
  const indices = new Set<number>();
  for (const n of names) {
    const m = pattern.exec(n);
    if (m) indices.add(Number(m[1]));
  }
  const depth = indices.size;
  for (let i = 0; i < depth; i++) if (!indices.has(i)) throw new CheckpointError(`${file}: blocks are numbered ${[...indices].sort((a, b) => a - b).join(', ')}; block ${i} is missing`);
  if (depth === 0) throw new CheckpointError(`${file}: no transformer blocks found`);
  return depth;
}

/**
 * Reads a local checkpoint (file, index or folder) in either layout into timm-named float32 weights, with its
 * architecture (from config.json, else from tensor shapes) and whatever preprocessing its configs give.
 */
export async function readVitCheckpoint(path: string, overrides: ArchOverrides = {}, progress?: ProgressReporter): Promise<VitCheckpoint> {
  const { dir, files, shardOf } = await checkpointFiles(path);
  const catalog = await TensorCatalog.open(files, shardOf);
  try {
    const names = catalog.names();
    const fileLabel = files.length === 1 ? files[0] : join(dir, INDEX_FILE);
    const { layout, prefix } = detectLayout(names, fileLabel);
    const configPath = join(dir, 'config.json');
    const config = ((await readJson(configPath)) ?? {}) as Json;
    const shapeOf = (name: string): number[] => {
      const s = catalog.shape(prefix + name);
      if (!s) throw new CheckpointError(`${fileLabel}: tensor "${prefix + name}" is missing`);
      return s;
    };

    // Architecture: config.json where it speaks, tensor shapes otherwise; shapes are all checked below.
    const cls = shapeOf(layout === 'hf' ? 'embeddings.cls_token' : 'cls_token');
    const proj = shapeOf(layout === 'hf' ? 'embeddings.patch_embeddings.projection.weight' : 'patch_embed.proj.weight');
    const pos = shapeOf(layout === 'hf' ? 'embeddings.position_embeddings' : 'pos_embed');
    const fc1 = shapeOf(layout === 'hf' ? 'encoder.layer.0.intermediate.dense.weight' : 'blocks.0.mlp.fc1.weight');
    let arch: VitArch;
    let preprocess: Partial<PreprocessSpec> = {};
    if (layout === 'hf') {
      const act = field(config, 'hidden_act', configPath, isString, 'a string');
      if (act !== undefined && act !== 'gelu') {
        throw new CheckpointError(`${configPath}: hidden_act "${act}" is not supported; this backbone implements the exact (erf) GELU, "gelu"`);
      }
      const patch = field(config, 'patch_size', configPath, isPositiveInt, 'a positive integer') ?? proj[2];
      const image = sizePair(config.image_size, configPath, 'image_size');
      arch = {
        width: field(config, 'hidden_size', configPath, isPositiveInt, 'a positive integer') ?? cls[2],
        depth: field(config, 'num_hidden_layers', configPath, isPositiveInt, 'a positive integer') ?? countBlocks(names, /^(?:vit\.)?encoder\.layer\.(\d+)\./, fileLabel),
        heads: overriding('heads', overrides.heads, field(config, 'num_attention_heads', configPath, isPositiveInt, 'a positive integer'), `${configPath} num_attention_heads`, progress) ?? missingHeads(fileLabel),
        mlpDim: field(config, 'intermediate_size', configPath, isPositiveInt, 'a positive integer') ?? fc1[0],
        // transformers' ViTConfig default, which Google's checkpoints rely on.
        layerNormEps: overriding('layerNormEps', overrides.layerNormEps, field(config, 'layer_norm_eps', configPath, isPositive, 'a positive number'), `${configPath} layer_norm_eps`, progress) ?? 1e-12,
        qkvBias: field(config, 'qkv_bias', configPath, isBool, 'true or false') ?? catalog.has(`${prefix}encoder.layer.0.attention.attention.query.bias`),
        patchSize: patch,
        imageSize: image ?? nativeGrid(pos[1], patch, overrides.imageSize, `${prefix}embeddings.position_embeddings`, fileLabel),
      };
      const preprocessorPath = join(dir, 'preprocessor_config.json');
      const preprocessor = await readJson(preprocessorPath);
      if (preprocessor !== undefined) preprocess = hfPreprocess(preprocessor as Json, preprocessorPath, overrides.resample !== undefined);
    } else {
      if (proj.length !== 4 || proj[2] !== proj[3]) {
        throw new CheckpointError(`${fileLabel}: tensor "patch_embed.proj.weight" has shape [${proj}]; expected [width, 3, patch, patch]`);
      }
      arch = {
        width: cls[2],
        depth: countBlocks(names, /^blocks\.(\d+)\./, fileLabel),
        heads: overriding('heads', overrides.heads, timmHeads(config), `${configPath}`, progress) ?? missingHeads(fileLabel),
        mlpDim: fc1[0],
        layerNormEps: overrides.layerNormEps ?? 1e-6,
        qkvBias: catalog.has('blocks.0.attn.qkv.bias'),
        patchSize: proj[2],
        imageSize: nativeGrid(pos[1], proj[2], overrides.imageSize, 'pos_embed', fileLabel),
      };
      preprocess = timmPreprocess(config, configPath, overrides.resample !== undefined);
    }
    checkArch(arch, fileLabel);

    const sources = plan(layout, prefix, arch);
    const used = new Set(sources.flatMap((s) => s.parts));
    const unknown = names.filter((n) => !used.has(n) && !ignorable(layout, n));
    if (unknown.length > 0) {
      throw new CheckpointError(
        `${catalog.fileOf(unknown[0])}: tensor "${unknown[0]}"${unknown.length > 1 ? ` (and ${unknown.length - 1} more: ${unknown.slice(1, 5).join(', ')}${unknown.length > 5 ? ', ...' : ''})` : ''} ` +
          `does not belong to a standard pre-norm ViT of ${arch.depth} blocks${layout === 'hf' && !arch.qkvBias ? ' without qkv bias' : ''}; ` +
          'variants with layer scale, register tokens, extra norms or a different depth are not supported',
      );
    }
    // Every shape is checked before any data is read, so a mismatch fails fast and names its tensor.
    for (const source of sources) {
      for (const part of source.parts) {
        const shape = catalog.shape(part);
        if (!shape) {
          const pooled = source.target.startsWith('norm.') && catalog.has(`${prefix}fc_norm.weight`);
          throw new CheckpointError(
            `${catalog.fileOf(part)}: tensor "${part}" is missing (needed for ${source.target})` +
              (pooled ? '; this model averages its tokens through fc_norm instead of normalising the CLS token, which this backbone needs' : ''),
          );
        }
        if (shape.length !== source.dims.length || shape.some((v, k) => v !== source.dims[k])) {
          throw new CheckpointError(
            `${catalog.fileOf(part)}: tensor "${part}" has shape [${shape.join(', ')}] but the architecture ` +
              `(width ${arch.width}, depth ${arch.depth}, MLP ${arch.mlpDim}, patch ${arch.patchSize}, image ${arch.imageSize.join('x')}) needs [${source.dims.join(', ')}]`,
          );
        }
      }
    }

    const task = progress?.task(`reading ${basename(fileLabel)}`, sources.length);
    const weights: VitWeights = new Map();
    for (const source of sources) {
      const parts = await Promise.all(source.parts.map((part) => catalog.read(part)));
      const data = parts.length === 1 ? parts[0] : concat(parts);
      const dims = parts.length === 1 ? source.dims : [source.dims[0] * parts.length, ...source.dims.slice(1)];
      weights.set(source.target, { dims, data } satisfies Tensor);
      task?.tick();
    }
    task?.done();
    const sha256 = await hashFiles(files, progress);
    return { files, dir, layout, arch, weights, preprocess, sha256 };
  } finally {
    await catalog.close();
  }
}

/** The option when given (with a warning if the checkpoint's config says otherwise), else the config's value. */
function overriding<T>(option: string, value: T | undefined, fromConfig: T | undefined, where: string, progress?: ProgressReporter): T | undefined {
  if (value === undefined) return fromConfig;
  if (fromConfig !== undefined && fromConfig !== value) progress?.warn(`the ${option} option (${value}) overrides ${fromConfig} from ${where}`);
  return value;
}

function missingHeads(file: string): never {
  throw new CheckpointError(
    `${file}: the number of attention heads is not in the tensors and no config says it; pass the heads option (e.g. 12 for ViT-B)`,
  );
}

/** The image size the position embeddings were made for: the wanted size if its grid fits them, else a square. */
function nativeGrid(positions: number, patch: number, wanted: [number, number] | undefined, tensor: string, file: string): [number, number] {
  if (wanted && wanted[0] % patch === 0 && wanted[1] % patch === 0 && (wanted[0] / patch) * (wanted[1] / patch) === positions - 1) {
    return [wanted[0], wanted[1]];
  }
  const side = Math.round(Math.sqrt(positions - 1));
  if (side * side !== positions - 1) {
    throw new CheckpointError(`${file}: tensor "${tensor}" has ${positions} positions, not 1 + a square grid; pass imageSize [height, width]`);
  }
  return [side * patch, side * patch];
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

async function hashFile(path: string, onBytes?: (n: number) => void): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 22 })) {
    hash.update(chunk as Buffer);
    onBytes?.((chunk as Buffer).length);
  }
  return hash.digest('hex');
}

/** sha256 of one file; of `sha256  name` lines (sha256sum's format) for several. */
export async function hashFiles(files: string[], progress?: ProgressReporter): Promise<string> {
  const sizes = await Promise.all(files.map(async (f) => (await stat(f)).size));
  const total = sizes.reduce((a, b) => a + b, 0);
  const task = total > 64 << 20 ? progress?.task('hashing weights', total) : undefined;
  const digests: string[] = [];
  for (const f of files) digests.push(await hashFile(f, task ? (n) => task.tick(n) : undefined));
  task?.done();
  if (files.length === 1) return digests[0];
  const manifest = files.map((f, i) => `${digests[i]}  ${basename(f)}\n`).join('');
  return createHash('sha256').update(manifest).digest('hex');
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
