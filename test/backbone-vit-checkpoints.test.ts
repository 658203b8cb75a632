// Checkpoint handling of @transformaly/backbone-vit: layouts, shards, refusals, errors naming the tensor and the file,
// preprocessing from configs and options, the external-data path, block weights, random models and the plugin.
import { createHash } from 'node:crypto';
import { copyFile, cp, mkdir, mkdtemp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileSchema, readSafetensors, writeSafetensors, type ArrayEntry, type Backbone, type ProgressReporter, type Tensor } from '@transformaly/core';
import { OnnxRuntime } from '@transformaly/runtime-onnx';
import { backboneChecks, registerChecks } from '@transformaly/testing';
import vitPlugin, {
  hfPreprocess,
  loadVitBackbone,
  randomVit,
  readVitCheckpoint,
  timmHeads,
  timmPreprocess,
  type VitBackboneOptions,
} from '@transformaly/backbone-vit';

const GOLDEN = join(import.meta.dirname, 'golden', 'vit');
const runtime = new OnnxRuntime({ threads: 1 });
let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'vit-checkpoints-'));
});
afterAll(async () => {
  await runtime.dispose();
  await rm(tmp, { recursive: true, force: true });
});

/** A progress reporter that records warnings. */
function recorder(): ProgressReporter & { warnings: string[] } {
  const warnings: string[] = [];
  return { warnings, task: () => ({ tick() {}, done() {} }), info() {}, warn: (m: string) => void warnings.push(m) };
}

async function pixels(name: 'a' | 'b'): Promise<Tensor> {
  const { arrays } = await readSafetensors(join(GOLDEN, name, 'reference.safetensors'));
  return { dims: arrays.pixels.dims, data: arrays.pixels.data as Float32Array };
}

async function withBackbone<T>(options: VitBackboneOptions, fn: (b: Backbone) => Promise<T>, extra: { progress?: ProgressReporter; workDir?: string; externalDataThreshold?: number } = {}): Promise<T> {
  const backbone = await loadVitBackbone(options, { runtime, ...extra });
  try {
    return await fn(backbone);
  } finally {
    await backbone.dispose();
  }
}

async function features(options: VitBackboneOptions, input: Tensor, extra = {}): Promise<Float32Array> {
  return withBackbone(options, async (b) => (await b.forward(input)).features.data as Float32Array, extra);
}

/** A copy of a golden checkpoint folder whose tensors `edit` may change. */
async function editedCopy(from: string, name: string, edit: (arrays: Record<string, ArrayEntry>) => void): Promise<string> {
  const dir = join(tmp, name);
  await cp(join(GOLDEN, from), dir, { recursive: true });
  const { arrays } = await readSafetensors(join(dir, 'model.safetensors'));
  edit(arrays);
  await writeSafetensors(join(dir, 'model.safetensors'), arrays);
  return dir;
}

describe('checkpoint files', () => {
  it('reads a sharded checkpoint through model.safetensors.index.json, with the same outputs', async () => {
    const dir = join(tmp, 'sharded');
    await mkdir(dir);
    for (const f of ['config.json', 'preprocessor_config.json']) await copyFile(join(GOLDEN, 'a', 'hf', f), join(dir, f));
    const { arrays } = await readSafetensors(join(GOLDEN, 'a', 'hf', 'model.safetensors'));
    const names = Object.keys(arrays).sort();
    const shards = [names.slice(0, 20), names.slice(20)];
    const weightMap: Record<string, string> = {};
    for (const [k, shard] of shards.entries()) {
      const file = `model-0000${k + 1}-of-00002.safetensors`;
      await writeSafetensors(join(dir, file), Object.fromEntries(shard.map((n) => [n, arrays[n]])));
      for (const n of shard) weightMap[n] = file;
    }
    await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));

    const input = await pixels('a');
    const single = await features({ checkpoint: join(GOLDEN, 'a', 'hf') }, input);
    const info = await withBackbone({ checkpoint: dir }, async (b) => {
      expect((await b.forward(input)).features.data).toEqual(single);
      return b.info;
    });
    // sha256 of the shards' sha256sum manifest.
    const manifest = [];
    for (const file of ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']) {
      manifest.push(`${createHash('sha256').update(await readFile(join(dir, file))).digest('hex')}  ${file}\n`);
    }
    expect(info.sha256).toBe(createHash('sha256').update(manifest.join('')).digest('hex'));

    // An index that points a tensor at the wrong shard names both.
    const moved = names[0];
    await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { ...weightMap, [moved]: 'model-00002-of-00002.safetensors' } }));
    await expect(readVitCheckpoint(dir)).rejects.toThrow(
      new RegExp(`model-00002-of-00002\\.safetensors: tensor "${moved.replace(/\./g, '\\.')}" is listed in model\\.safetensors\\.index\\.json but missing`),
    );
  });

  it('hashes a single weight file with sha256', async () => {
    const file = join(GOLDEN, 'b', 'hf', 'model.safetensors');
    const checkpoint = await readVitCheckpoint(file);
    expect(checkpoint.sha256).toBe(createHash('sha256').update(await readFile(file)).digest('hex'));
    expect(checkpoint.layout).toBe('hf');
    expect(checkpoint.files).toEqual([file]);
    // The configs beside the file are read.
    expect(checkpoint.arch.layerNormEps).toBe(1e-12);
    expect(checkpoint.preprocess.resample).toBe('bicubic');
  });

  it('names the tensor of an inconsistent safetensors header', async () => {
    const source = await readFile(join(GOLDEN, 'a', 'timm', 'model.safetensors'));
    const headerLength = Number(source.readBigUInt64LE(0));
    const header = JSON.parse(source.subarray(8, 8 + headerLength).toString('utf8'));
    header['norm.bias'].shape = [47];
    let json = JSON.stringify(header);
    json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8);
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(json.length));
    const dir = join(tmp, 'inconsistent');
    await mkdir(dir);
    const file = join(dir, 'model.safetensors');
    await writeFile(file, Buffer.concat([length, Buffer.from(json), source.subarray(8 + headerLength)]));
    await expect(readVitCheckpoint(file)).rejects.toThrow(`${file}: tensor "norm.bias" of shape [47] BF16 needs 94 bytes but its offsets span 96`);
  });

  it('refuses pickle checkpoints with the conversion snippet', async () => {
    const dir = join(tmp, 'pickle');
    await mkdir(dir);
    await writeFile(join(dir, 'pytorch_model.bin'), Buffer.from([0x80, 0x02, 0x7d, 0x71]));
    for (const target of [join(dir, 'pytorch_model.bin'), dir]) {
      const error = await loadVitBackbone({ checkpoint: target }, { runtime }).then(
        () => undefined,
        (e: Error) => e,
      );
      expect(error?.message).toContain(join(dir, 'pytorch_model.bin'));
      expect(error?.message).toContain('from safetensors.torch import save_file');
      // The safe form: weights_only=True never runs code from the file; each tensor gets its own contiguous storage,
      // which save_file requires (it refuses shared or non-contiguous tensors).
      expect(error?.message).toContain(`state = torch.load("${join(dir, 'pytorch_model.bin')}", map_location="cpu", weights_only=True)\n`);
      expect(error?.message).toContain(
        `save_file({k: v.contiguous().clone() for k, v in state.items() if isinstance(v, torch.Tensor)}, "${join(dir, 'pytorch_model.safetensors')}")`,
      );
      expect(error?.message).not.toMatch(/torch\.load\([^)]*\)(?<!weights_only=True\))/);
      expect(error?.message).toMatch(/\(\.bin, \.pth, \.pt, \.ckpt, \.pkl\) are not read/);
    }
    await expect(loadVitBackbone({ checkpoint: join(dir, 'model.pth') }, { runtime })).rejects.toThrow(/not a hub id/);
    await writeFile(join(dir, 'model.pth'), 'x');
    await expect(loadVitBackbone({ checkpoint: join(dir, 'model.pth') }, { runtime })).rejects.toThrow(/pickle checkpoints .* are not read/);
  });

  it('names the file and a tensor of a truncated safetensors file', async () => {
    const dir = join(tmp, 'truncated');
    await cp(join(GOLDEN, 'a', 'timm'), dir, { recursive: true });
    const file = join(dir, 'model.safetensors');
    await truncate(file, 100_000);
    await expect(loadVitBackbone({ checkpoint: dir }, { runtime })).rejects.toThrow(
      new RegExp(`${file.replace(/[.]/g, '\\.')}: tensor "[\\w.]+" ends at byte \\d+ of the data section, which has only \\d+ bytes \\(file truncated\\?\\)`),
    );
  });

  it('names a missing tensor and its file', async () => {
    const dir = await editedCopy('a/hf', 'missing', (arrays) => void delete arrays['vit.encoder.layer.1.attention.attention.key.weight']);
    await expect(loadVitBackbone({ checkpoint: dir }, { runtime })).rejects.toThrow(
      `${join(dir, 'model.safetensors')}: tensor "vit.encoder.layer.1.attention.attention.key.weight" is missing (needed for blocks.1.attn.qkv.weight)`,
    );
  });

  it('names a tensor whose shape does not fit the architecture', async () => {
    const dir = await editedCopy('a/timm', 'shape', (arrays) => {
      arrays['blocks.2.mlp.fc2.weight'] = { dims: [48, 95], data: new Float32Array(48 * 95) };
    });
    await expect(loadVitBackbone({ checkpoint: dir }, { runtime })).rejects.toThrow(
      /model\.safetensors: tensor "blocks\.2\.mlp\.fc2\.weight" has shape \[48, 95\] but the architecture \(width 48, depth 3, MLP 96, patch 8, image 32x32\) needs \[48, 96\]/,
    );
    // A config that disagrees with the tensors is caught the same way.
    const hf = join(tmp, 'config-mismatch');
    await cp(join(GOLDEN, 'a', 'hf'), hf, { recursive: true });
    const config = JSON.parse(await readFile(join(hf, 'config.json'), 'utf8'));
    await writeFile(join(hf, 'config.json'), JSON.stringify({ ...config, intermediate_size: 128 }));
    await expect(readVitCheckpoint(hf)).rejects.toThrow(/tensor "vit\.encoder\.layer\.0\.intermediate\.dense\.weight" has shape \[96, 48\] .* needs \[128, 48\]/);
  });

  it('refuses tensors of unsupported ViT variants instead of ignoring them', async () => {
    const dir = await editedCopy('a/timm', 'layerscale', (arrays) => {
      arrays['blocks.0.ls1.gamma'] = { dims: [48], data: new Float32Array(48).fill(1e-5) };
    });
    await expect(readVitCheckpoint(dir)).rejects.toThrow(/tensor "blocks\.0\.ls1\.gamma" does not belong to a standard pre-norm ViT/);
    // An average-pooling timm model (fc_norm, no final norm) is explained rather than half-loaded.
    const pooled = await editedCopy('a/timm', 'pooled', (arrays) => {
      arrays['fc_norm.weight'] = arrays['norm.weight'];
      arrays['fc_norm.bias'] = arrays['norm.bias'];
      delete arrays['norm.weight'];
      delete arrays['norm.bias'];
    });
    await expect(readVitCheckpoint(pooled)).rejects.toThrow(/tensor "norm\.weight" is missing \(needed for norm\.weight\); this model averages its tokens through fc_norm/);
  });

  it('asks for heads when a bare timm file does not say, and reads them from a timm config', async () => {
    await expect(readVitCheckpoint(join(GOLDEN, 'b', 'timm'))).rejects.toThrow(/attention heads .* pass the heads option/);
    expect((await readVitCheckpoint(join(GOLDEN, 'a', 'timm'))).arch.heads).toBe(4);
    expect(timmHeads({ architecture: 'vit_base_patch16_224.augreg2_in21k_ft_in1k' })).toBe(12);
    expect(timmHeads({ architecture: 'vit_large_patch14_clip_224' })).toBe(16);
    expect(timmHeads({ architecture: 'vit_small_patch16_224', model_args: { num_heads: 8 } })).toBe(8);
    expect(timmHeads({ architecture: 'resnet50' })).toBeUndefined();
  });

  it('lets options override the config, with a warning', async () => {
    const progress = recorder();
    const checkpoint = await readVitCheckpoint(join(GOLDEN, 'a', 'hf'), { heads: 2, layerNormEps: 1e-5 }, progress);
    expect([checkpoint.arch.heads, checkpoint.arch.layerNormEps]).toEqual([2, 1e-5]);
    expect(progress.warnings).toEqual([
      `the heads option (2) overrides 4 from ${join(GOLDEN, 'a', 'hf', 'config.json')} num_attention_heads`,
      `the layerNormEps option (0.00001) overrides 0.000001 from ${join(GOLDEN, 'a', 'hf', 'config.json')} layer_norm_eps`,
    ]);
  });

  it('refuses a non-exact GELU', async () => {
    const dir = join(tmp, 'gelu');
    await cp(join(GOLDEN, 'b', 'hf'), dir, { recursive: true });
    const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
    await writeFile(join(dir, 'config.json'), JSON.stringify({ ...config, hidden_act: 'gelu_new' }));
    await expect(readVitCheckpoint(dir)).rejects.toThrow(`${join(dir, 'config.json')}: hidden_act "gelu_new" is not supported`);
  });

  it('resolves a hub id through the Hugging Face cache (offline)', async () => {
    const cacheDir = join(tmp, 'hub-cache');
    const commit = 'c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00';
    const repo = join(cacheDir, 'models--golden--vit-a');
    await mkdir(join(repo, 'refs'), { recursive: true });
    await writeFile(join(repo, 'refs', 'main'), commit);
    await cp(join(GOLDEN, 'a', 'hf'), join(repo, 'snapshots', commit), { recursive: true });
    const input = await pixels('a');
    const info = await withBackbone({ checkpoint: 'golden/vit-a', cacheDir, offline: true }, async (b) => {
      expect((await b.forward(input)).features.data).toEqual(await features({ checkpoint: join(GOLDEN, 'a', 'hf') }, input));
      return b.info;
    });
    expect(info.id).toBe('golden/vit-a');
    await expect(loadVitBackbone({ checkpoint: 'golden/not-cached', cacheDir, offline: true }, { runtime })).rejects.toThrow(/not in the cache/);
  });
});

describe('preprocessing', () => {
  it('comes from preprocessor_config.json (HF) and pretrained_cfg (timm)', async () => {
    await withBackbone({ checkpoint: join(GOLDEN, 'a', 'hf') }, async (b) => {
      expect(b.info.preprocess).toEqual({ size: [32, 32], resample: 'bilinear', mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] });
    });
    await withBackbone({ checkpoint: join(GOLDEN, 'a', 'timm') }, async (b) => {
      expect(b.info.preprocess).toEqual({ size: [32, 32], resample: 'bicubic', mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] });
    });
    await withBackbone({ checkpoint: join(GOLDEN, 'b', 'hf') }, async (b) => {
      expect(b.info.preprocess).toEqual({ size: [24, 24], resample: 'bicubic', mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] });
    });
  });

  it('is overridden by the options, field by field', async () => {
    const progress = recorder();
    await withBackbone(
      { checkpoint: join(GOLDEN, 'a', 'hf'), mean: [0.1, 0.2, 0.3], resample: 'nearest' },
      async (b) => {
        expect(b.info.preprocess).toEqual({ size: [32, 32], resample: 'nearest', mean: [0.1, 0.2, 0.3], std: [0.229, 0.224, 0.225] });
      },
      { progress },
    );
    expect(progress.warnings).toEqual([]);
  });

  it("a filter this backbone lacks (PIL's LANCZOS) is refused with advice that works: the resample option", async () => {
    const dir = join(tmp, 'lanczos');
    await cp(join(GOLDEN, 'a', 'hf'), dir, { recursive: true });
    const preprocessor = JSON.parse(await readFile(join(dir, 'preprocessor_config.json'), 'utf8'));
    await writeFile(join(dir, 'preprocessor_config.json'), JSON.stringify({ ...preprocessor, resample: 1 }));
    await expect(withBackbone({ checkpoint: dir }, async () => undefined)).rejects.toThrow(
      `${join(dir, 'preprocessor_config.json')}: "resample" is 1; supported PIL codes are 0 (nearest), 2 (bilinear), 3 (bicubic) — set the resample option to override`,
    );
    await withBackbone({ checkpoint: dir, resample: 'bicubic' }, async (b) => expect(b.info.preprocess.resample).toBe('bicubic'));

    const timm = join(tmp, 'timm-lanczos');
    await cp(join(GOLDEN, 'a', 'timm'), timm, { recursive: true });
    const config = JSON.parse(await readFile(join(timm, 'config.json'), 'utf8'));
    await writeFile(join(timm, 'config.json'), JSON.stringify({ ...config, pretrained_cfg: { ...config.pretrained_cfg, interpolation: 'lanczos' } }));
    await expect(withBackbone({ checkpoint: timm }, async () => undefined)).rejects.toThrow(/interpolation is "lanczos".*set the resample option to override/);
    await withBackbone({ checkpoint: timm, resample: 'bilinear' }, async (b) => expect(b.info.preprocess.resample).toBe('bilinear'));
  });

  it('falls back to defaults with a warning when nothing gives it', async () => {
    const progress = recorder();
    await withBackbone(
      { checkpoint: join(GOLDEN, 'b', 'timm'), heads: 2, std: [0.25, 0.25, 0.25] },
      async (b) => {
        expect(b.info.preprocess).toEqual({ size: [24, 24], resample: 'bicubic', mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] });
        expect(b.info.layerNormEps).toBe(1e-6);
      },
      { progress },
    );
    expect(progress.warnings).toHaveLength(1);
    expect(progress.warnings[0]).toMatch(/no preprocessing config gives resample, mean; using resample bicubic, mean 0\.5,0\.5,0\.5/);
  });

  it('parses the config variants', () => {
    expect(hfPreprocess({ do_normalize: false, size: { shortest_edge: 224 }, resample: 0 }, 'p.json')).toEqual({
      size: [224, 224],
      resample: 'nearest',
      mean: [0, 0, 0],
      std: [1, 1, 1],
    });
    expect(() => hfPreprocess({ resample: 1 }, '/x/preprocessor_config.json')).toThrow(/\/x\/preprocessor_config\.json: "resample" is 1; supported PIL codes/);
    expect(() => hfPreprocess({ image_mean: [0.5, 0.5] }, 'p.json')).toThrow(/p\.json: "image_mean" is \[0\.5,0\.5\]; expected three numbers/);
    expect(timmPreprocess({ pretrained_cfg: { input_size: [3, 384, 384], interpolation: 'bilinear', mean: [0, 0, 0], std: [1, 1, 1] } }, 'c.json')).toEqual({
      size: [384, 384],
      resample: 'bilinear',
      mean: [0, 0, 0],
      std: [1, 1, 1],
    });
    expect(timmPreprocess({ architecture: 'vit_base_patch16_224' }, 'c.json')).toEqual({});
  });
});

describe('ViTBackbone', () => {
  it('stores weights as external data above a lowered threshold, with identical outputs', async () => {
    const input = await pixels('a');
    const workDir = join(tmp, 'external');
    await mkdir(workDir);
    const embedded = await features({ checkpoint: join(GOLDEN, 'a', 'hf') }, input);
    const external = await features({ checkpoint: join(GOLDEN, 'a', 'hf') }, input, { workDir, externalDataThreshold: 4096 });
    expect(external).toEqual(embedded);
    const files = await readdir(workDir);
    expect(files.filter((f) => f.endsWith('.onnx.data'))).toHaveLength(1);
  });

  it('returns only the requested taps, and the same features with or without them', async () => {
    const input = await pixels('b');
    await withBackbone({ checkpoint: join(GOLDEN, 'b', 'hf') }, async (b) => {
      const plain = await b.forward(input);
      expect(plain.taps.size).toBe(0);
      const tapped = await b.forward(input, { taps: [1] });
      expect([...tapped.taps.keys()]).toEqual([1]);
      expect(tapped.features.data).toEqual(plain.features.data);
      expect(tapped.taps.get(1)!.output.dims).toEqual([2, 37, 64]);
      await expect(b.forward(input, { taps: [2] })).rejects.toThrow(/tap 2 is not a block index \(0\.\.1\)/);
      await expect(b.forward({ dims: [1, 3, 32, 32], data: new Float32Array(3 * 32 * 32) })).rejects.toThrow(/pixels must be \[N, 3, 24, 24\], got \[1, 3, 32, 32\]/);
    });
  });

  it('gives block weights in timm naming and torch orientation, equal across layouts', async () => {
    const { arrays } = await readSafetensors(join(GOLDEN, 'a', 'timm', 'model.safetensors'));
    const fromHf = await withBackbone({ checkpoint: join(GOLDEN, 'a', 'hf') }, async (b) => b.blockWeights(1));
    const fromTimm = await withBackbone({ checkpoint: join(GOLDEN, 'a', 'timm') }, async (b) => {
      const w = b.blockWeights(1);
      w['attn.qkv.weight'].data.fill(0);
      expect(b.blockWeights(1)['attn.qkv.weight'].data).not.toEqual(w['attn.qkv.weight'].data);
      expect(() => b.blockWeights(3)).toThrow(/block 3 does not exist/);
      return b.blockWeights(1);
    });
    expect(Object.keys(fromTimm).sort()).toEqual(
      ['attn.proj.bias', 'attn.proj.weight', 'attn.qkv.bias', 'attn.qkv.weight', 'mlp.fc1.bias', 'mlp.fc1.weight', 'mlp.fc2.bias', 'mlp.fc2.weight', 'norm1.bias', 'norm1.weight', 'norm2.bias', 'norm2.weight'],
    );
    for (const [name, t] of Object.entries(fromTimm)) {
      expect(t.dims).toEqual(arrays[`blocks.1.${name}`].dims);
      expect(t.data).toEqual(arrays[`blocks.1.${name}`].data);
      expect(fromHf[name].data).toEqual(t.data);
    }
    expect(fromTimm['attn.qkv.weight'].dims).toEqual([144, 48]);
    const noBias = await withBackbone({ checkpoint: join(GOLDEN, 'b', 'hf') }, async (b) => b.blockWeights(0));
    expect(noBias['attn.qkv.bias']).toBeUndefined();
  });

  it('makes reproducible untrained models', async () => {
    const arch = { imageSize: [32, 32] as [number, number], patchSize: 8, width: 32, depth: 2, heads: 2 };
    const input: Tensor = { dims: [2, 3, 32, 32], data: Float32Array.from({ length: 2 * 3 * 32 * 32 }, (_, i) => Math.sin(i)) };
    const run = async (seed: number) => {
      const b = await randomVit({ seed, arch }, { runtime });
      try {
        return { info: b.info, features: (await b.forward(input)).features.data, block: b.blockWeights(1) };
      } finally {
        await b.dispose();
      }
    };
    const [one, again, other] = [await run(7), await run(7), await run(8)];
    expect(one.info).toMatchObject({ id: 'random:7', untrained: true, width: 32, depth: 2, heads: 2, mlpDim: 128, tokens: 17 });
    expect(one.info.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(again.info.sha256).toBe(one.info.sha256);
    expect(again.features).toEqual(one.features);
    expect(other.info.sha256).not.toBe(one.info.sha256);
    expect(other.features).not.toEqual(one.features);
    expect(one.block['mlp.fc1.weight'].dims).toEqual([128, 32]);
    expect(one.block['norm1.weight'].data.every((v) => v === 1)).toBe(true);
  });
});

describe('plugin', () => {
  it('validates its options', () => {
    const validate = compileSchema(vitPlugin.stages.backbone.optionsSchema);
    expect(validate({ checkpoint: 'google/vit-base-patch16-224', imageSize: 384, mean: [0.5, 0.5, 0.5], resample: 'bicubic', offline: true })).toBe(true);
    expect(validate({ random: { seed: 1, arch: 'ViT-S/16' } })).toBe(true);
    expect(validate({ random: { arch: { width: 64, depth: 2, heads: 2 } }, imageSize: [32, 48] })).toBe(true);
    expect(validate({ checkpoint: 'x', colour: 'blue' })).toBe(false);
    expect(validate({})).toBe(false);
    expect(validate({ checkpoint: 'x', mean: [0.5, 0.5] })).toBe(false);
    expect(validate({ random: { arch: 'ViT-Z/1' } })).toBe(false);
  });

  it('carries its package name, version and alias', () => {
    expect(vitPlugin.name).toBe('@transformaly/backbone-vit');
    expect(vitPlugin.aliases).toEqual(['vit']);
    expect(vitPlugin.version).toMatch(/^\d+\.\d+\.\d+/);
  });
});

// The Backbone contract (consistent info, taps, batch independence, refusals of bad pixels, timm-named block weights)
// on a tiny random ViT built through the core's binding of the plugin.
describe('conformance: random ViT', () =>
  registerChecks(
    backboneChecks({ plugin: vitPlugin, options: { random: { seed: 3, arch: { imageSize: [16, 16], patchSize: 8, width: 16, depth: 2, heads: 2 } } } }, { runtime }),
    it,
  ));
