// A backbone for Transformaly: a pre-norm Vision Transformer whose weights are one safetensors file in the timm layout
// (what `safetensors.torch.save_file(model.state_dict(), ...)` writes for a timm ViT), optionally under a prefix (e.g.
// `model.` in a checkpoint saved from a training wrapper). The architecture is read from the tensors' shapes; only the
// number of attention heads must be given. @transformaly/backbone-vit builds the ONNX graph, which runs on the
// pipeline's runtime. For another checkpoint format, change `readWeights`: the rest only needs timm-named tensors.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { definePlugin, pluginPackage, readSafetensors, type Backbone, type JsonSchema, type PreprocessSpec, type StageContexts } from '@transformaly/core';
import { expectedShapes, ViTBackbone, type VitArch, type VitWeights } from '@transformaly/backbone-vit';

export interface SafetensorsVitOptions {
  /** The .safetensors file (a path in the config is relative to the config file). */
  weights: string;
  /** Attention heads: the tensors' shapes do not tell them. */
  heads: number;
  /** Only tensors whose names start with this are read, without it; default '' (all). */
  prefix?: string;
  /** LayerNorm epsilon; default 1e-6 (timm's). */
  layerNormEps?: number;
  /** Per-channel normalisation (RGB, on the 0..1 scale); default 0.5 each, as the model was trained. */
  mean?: [number, number, number];
  std?: [number, number, number];
}

const triple = (what: string) => ({ type: 'array', items: { type: 'number' }, minItems: 3, maxItems: 3, default: [0.5, 0.5, 0.5], description: what });

export const optionsSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['weights', 'heads'],
  properties: {
    weights: { type: 'string', minLength: 1, resolvePath: true, description: 'the .safetensors file, timm layout' },
    heads: { type: 'integer', minimum: 1, description: 'attention heads' },
    prefix: { type: 'string', default: '', description: 'read only the tensors whose names start with this, without it' },
    layerNormEps: { type: 'number', exclusiveMinimum: 0, default: 1e-6, description: 'LayerNorm epsilon' },
    mean: triple('per-channel mean, RGB on the 0..1 scale'),
    std: { ...triple('per-channel std, RGB on the 0..1 scale'), items: { type: 'number', exclusiveMinimum: 0 } },
  },
};

/** The file's tensors under the timm names, as float32 (F16 and BF16 are widened on reading). */
export async function readWeights(file: string, prefix = ''): Promise<VitWeights> {
  const { arrays } = await readSafetensors(file);
  const weights: VitWeights = new Map();
  for (const [name, entry] of Object.entries(arrays)) {
    if (!name.startsWith(prefix)) continue;
    if (!(entry.data instanceof Float32Array || entry.data instanceof Float64Array)) throw new TypeError(`${file}: tensor ${name} is not floating point`);
    weights.set(name.slice(prefix.length), { dims: entry.dims, data: Float32Array.from(entry.data) });
  }
  if (weights.size === 0) throw new Error(`${file}: no tensor${prefix ? ` named ${prefix}...` : ''}`);
  return weights;
}

/** The ViT's hyper-parameters, from the shapes of its tensors (a square input, as timm's position embeddings are). */
export function archOf(weights: VitWeights, heads: number, layerNormEps: number, file: string): VitArch {
  const dims = (name: string): number[] => {
    const tensor = weights.get(name);
    if (!tensor) throw new Error(`${file}: no tensor ${name} (expected the timm ViT layout)`);
    return tensor.dims;
  };
  const width = dims('cls_token')[2];
  const patchSize = dims('patch_embed.proj.weight')[2];
  const grid = Math.sqrt(dims('pos_embed')[1] - 1);
  if (!Number.isInteger(grid)) throw new Error(`${file}: pos_embed holds ${dims('pos_embed')[1]} tokens, not 1 + a square grid of patches`);
  let depth = 0;
  while (weights.has(`blocks.${depth}.norm1.weight`)) depth++;
  const arch: VitArch = {
    imageSize: [grid * patchSize, grid * patchSize],
    patchSize,
    width,
    depth,
    heads,
    mlpDim: dims('blocks.0.mlp.fc1.weight')[0],
    layerNormEps,
    qkvBias: weights.has('blocks.0.attn.qkv.bias'),
  };
  if (width % heads !== 0) throw new Error(`${file}: width ${width} does not split into ${heads} heads`);
  for (const [name, expected] of expectedShapes(arch)) {
    if (dims(name).join() !== expected.join()) throw new Error(`${file}: tensor ${name} is [${dims(name)}], expected [${expected}] for this ViT`);
  }
  return arch;
}

async function sha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export async function loadBackbone(options: SafetensorsVitOptions, ctx: StageContexts['backbone']): Promise<Backbone> {
  const weights = await readWeights(options.weights, options.prefix);
  const arch = archOf(weights, options.heads, options.layerNormEps ?? 1e-6, options.weights);
  const preprocess: PreprocessSpec = {
    size: arch.imageSize,
    resample: 'bicubic',
    mean: options.mean ?? [0.5, 0.5, 0.5],
    std: options.std ?? [0.5, 0.5, 0.5],
  };
  return ViTBackbone.create(arch, weights, { id: options.weights, sha256: await sha256(options.weights), untrained: false, preprocess }, { runtime: ctx.runtime, progress: ctx.progress });
}

// Name, version and aliases come from this package's package.json, so they are written once.
const { name, version, aliases } = pluginPackage(import.meta.url);

export const plugin = definePlugin({
  name,
  version,
  aliases,
  description: 'a ViT from one safetensors file in the timm layout',
  stages: {
    // Built once per pipeline, on the pipeline's runtime; pipeline.dispose() disposes it.
    backbone: { optionsSchema, create: (options: SafetensorsVitOptions, ctx) => loadBackbone(options, ctx) },
  },
});

export default plugin;
