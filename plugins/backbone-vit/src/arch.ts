import { studentShapes, type Tensor } from '@transformaly/core';

/** Hyper-parameters of a standard pre-norm ViT (CLS token, learned absolute position embeddings, GELU MLP). */
export interface VitArch {
  /** Height and width of the input the position embeddings were made for. */
  imageSize: [number, number];
  patchSize: number;
  width: number;
  depth: number;
  heads: number;
  mlpDim: number;
  layerNormEps: number;
  qkvBias: boolean;
}

/** Weights in the timm layout and torch orientation (Linear weights [out, in]), e.g. `blocks.3.attn.qkv.weight`. */
export type VitWeights = Map<string, Tensor>;

/** Patches per side and tokens per image (patches + CLS). */
export function gridOf(arch: VitArch): { rows: number; cols: number; tokens: number } {
  const rows = arch.imageSize[0] / arch.patchSize;
  const cols = arch.imageSize[1] / arch.patchSize;
  return { rows, cols, tokens: rows * cols + 1 };
}

/** Throws unless the numbers describe a buildable ViT. */
export function checkArch(arch: VitArch, where = 'architecture'): void {
  const positive = (value: number, name: string) => {
    if (!Number.isInteger(value) || value < 1) throw new Error(`${where}: ${name} must be a positive integer, got ${value}`);
  };
  positive(arch.patchSize, 'patch size');
  positive(arch.imageSize[0], 'image height');
  positive(arch.imageSize[1], 'image width');
  positive(arch.width, 'width');
  positive(arch.depth, 'depth');
  positive(arch.heads, 'heads');
  positive(arch.mlpDim, 'MLP width');
  if (arch.imageSize[0] % arch.patchSize !== 0 || arch.imageSize[1] % arch.patchSize !== 0) {
    throw new Error(`${where}: image size ${arch.imageSize.join('x')} is not a multiple of the patch size ${arch.patchSize}`);
  }
  if (arch.width % arch.heads !== 0) throw new Error(`${where}: width ${arch.width} is not divisible by ${arch.heads} heads`);
  if (!(arch.layerNormEps > 0)) throw new Error(`${where}: LayerNorm epsilon must be positive, got ${arch.layerNormEps}`);
}

/** The shape each timm-layout tensor must have for `arch`. */
export function expectedShapes(arch: VitArch): Map<string, number[]> {
  const { width: d, patchSize: p } = arch;
  const shapes = new Map<string, number[]>([
    ['cls_token', [1, 1, d]],
    ['pos_embed', [1, gridOf(arch).tokens, d]],
    ['patch_embed.proj.weight', [d, 3, p, p]],
    ['patch_embed.proj.bias', [d]],
    ['norm.weight', [d]],
    ['norm.bias', [d]],
  ]);
  for (let i = 0; i < arch.depth; i++) {
    for (const [name, dims] of Object.entries(blockShapes(arch))) shapes.set(`blocks.${i}.${name}`, dims);
  }
  return shapes;
}

/** Shapes of one block's tensors, named as in `Backbone.blockWeights`. */
export function blockShapes(arch: VitArch): Record<string, number[]> {
  return studentShapes(arch);
}

/** Named sizes for random models and tests: the usual ViT family at 224 px. */
export const VIT_PRESETS: Record<string, VitArch> = {
  'ViT-Ti/16': preset(192, 12, 3, 768, 16),
  'ViT-S/16': preset(384, 12, 6, 1536, 16),
  'ViT-B/16': preset(768, 12, 12, 3072, 16),
  'ViT-B/32': preset(768, 12, 12, 3072, 32),
  'ViT-L/16': preset(1024, 24, 16, 4096, 16),
  'ViT-H/14': preset(1280, 32, 16, 5120, 14),
};

function preset(width: number, depth: number, heads: number, mlpDim: number, patchSize: number): VitArch {
  return { imageSize: [224, 224], patchSize, width, depth, heads, mlpDim, layerNormEps: 1e-6, qkvBias: true };
}
