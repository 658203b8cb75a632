import { ConfigError, validateAgainst } from '../config/validate.js';
import type { AdamSettings, JsonSchema, TapPrecision } from '../types.js';

/**
 * Which transformer blocks get a student, 0-based:
 * - `{ from, to }`: `range(from, to)`, `to` exclusive (the paper's default `{ from: 2, to: 12 }` for a 12-block ViT);
 * - a list of indices (used in ascending order, which is also the order of the feature columns);
 * - `{ last: n }`: the last `n` blocks of whatever backbone is used.
 */
export type BlockSelection = { from: number; to: number } | number[] | { last: number };

export interface DistillerOptions {
  blocks?: BlockSelection;
  /** Passes over the training images (default 30). */
  epochs?: number;
  /** Adam learning rate (default 1e-4). */
  lr?: number;
  /** Adam betas (default [0.9, 0.999]). */
  betas?: [number, number];
  /** Adam epsilon (default 1e-8). */
  eps?: number;
  /** Seed of the students' random initialisation (default 0). */
  seed?: number;
  /** A safetensors file of initial student weights keyed `block{i}.<timm name>` (warm starts, parity tests). */
  initialWeights?: string;
  /**
   * The teacher runs once per image and its taps are replayed in later epochs (default); `false` runs it again every
   * epoch. `precision` stores them as float32 (default; the same students as streaming) or float16/bfloat16 (half
   * the memory); `memoryMiB` caps what is held in memory (default half the free memory), the rest goes to a
   * temporary file in the checkpoint folder (or the OS temporary folder), deleted when the fit ends.
   */
  teacherCache?: false | TeacherCacheOptions;
}

export interface TeacherCacheOptions {
  precision?: TapPrecision;
  memoryMiB?: number;
}

/** Options after defaults; `blocks` is still a selection because `{ last: n }` needs the backbone's depth. */
export interface ResolvedDistillerOptions {
  blocks: BlockSelection;
  epochs: number;
  adam: AdamSettings;
  seed: number;
  initialWeights?: string;
  /** `memoryMiB` absent: half the memory free when the fit starts. */
  teacherCache: false | { precision: TapPrecision; memoryMiB?: number };
}

export const DISTILLER_DEFAULTS = {
  blocks: { from: 2, to: 12 },
  epochs: 30,
  lr: 1e-4,
  betas: [0.9, 0.999],
  eps: 1e-8,
  seed: 0,
  tapPrecision: 'float32',
} as const;

const blockIndex = { type: 'integer', minimum: 0 } as const;

/**
 * Options of the `transformaly` distiller. The training batch is the config's `batchSize` (the Detector streams
 * batches of that size), so there is no separate batch option: set `batchSize: 32` for the paper's setting.
 */
export const distillerOptionsSchema: JsonSchema = {
  type: 'object',
  description: 'Teacher-student distillation (Transformaly fine-tuned features). Training batch = the config batchSize.',
  properties: {
    blocks: {
      description:
        '0-based blocks that get a student: { from, to } = range(from, to) (default { from: 2, to: 12 }), a list of indices, or { last: n }.',
      expected: 'one of: { from, to } (0-based range, "to" exclusive), a list of block indices, or { last: n }',
      oneOf: [
        {
          type: 'object',
          properties: { from: blockIndex, to: { type: 'integer', minimum: 1 } },
          required: ['from', 'to'],
          additionalProperties: false,
        },
        { type: 'array', items: blockIndex, minItems: 1, uniqueItems: true },
        {
          type: 'object',
          properties: { last: { type: 'integer', minimum: 1 } },
          required: ['last'],
          additionalProperties: false,
        },
      ],
    },
    epochs: { type: 'integer', minimum: 1, description: 'Training epochs (default 30).' },
    lr: { type: 'number', exclusiveMinimum: 0, description: 'Adam learning rate (default 1e-4).' },
    betas: {
      type: 'array',
      items: { type: 'number', minimum: 0, exclusiveMaximum: 1 },
      minItems: 2,
      maxItems: 2,
      description: 'Adam betas (default [0.9, 0.999]).',
    },
    eps: { type: 'number', exclusiveMinimum: 0, description: 'Adam epsilon (default 1e-8).' },
    seed: { type: 'integer', minimum: 0, description: 'Seed of the random student initialisation (default 0).' },
    initialWeights: {
      type: 'string',
      minLength: 1,
      resolvePath: true,
      description: 'safetensors file of initial student weights keyed block{i}.<timm name> (e.g. block2.attn.qkv.weight).',
    },
    teacherCache: {
      description:
        'Teacher once per image, taps replayed in later epochs (default { precision: float32 }, in memory up to memoryMiB, default half the free memory, ' +
        'the rest in a temporary file); false runs the teacher every epoch.',
      expected: 'false, or { precision?: "float32" | "float16" | "bfloat16", memoryMiB?: number >= 0 }',
      oneOf: [
        { const: false },
        {
          type: 'object',
          properties: {
            precision: { enum: ['float32', 'float16', 'bfloat16'] },
            memoryMiB: { type: 'number', minimum: 0 },
          },
          additionalProperties: false,
        },
      ],
    },
  },
  additionalProperties: false,
};

/** Validates options given in code (the config path validates them already) and fills in the defaults. */
export function resolveDistillerOptions(options: DistillerOptions = {}): ResolvedDistillerOptions {
  const copy = structuredClone(options ?? {});
  const issues = validateAgainst(distillerOptionsSchema, copy, 'distiller.options', process.cwd());
  const blocks = copy.blocks ?? structuredClone(DISTILLER_DEFAULTS.blocks);
  if (issues.length === 0 && 'from' in blocks && !Array.isArray(blocks) && blocks.from >= blocks.to) {
    issues.push({ path: 'distiller.options.blocks', found: blocks, expected: '"from" below "to" (the range is from..to-1)' });
  }
  if (issues.length > 0) throw new ConfigError('distiller "transformaly"', issues);
  const [beta1, beta2] = copy.betas ?? DISTILLER_DEFAULTS.betas;
  return {
    blocks,
    epochs: copy.epochs ?? DISTILLER_DEFAULTS.epochs,
    adam: { lr: copy.lr ?? DISTILLER_DEFAULTS.lr, beta1, beta2, eps: copy.eps ?? DISTILLER_DEFAULTS.eps },
    seed: copy.seed ?? DISTILLER_DEFAULTS.seed,
    initialWeights: copy.initialWeights,
    teacherCache:
      copy.teacherCache === false
        ? false
        : { precision: copy.teacherCache?.precision ?? DISTILLER_DEFAULTS.tapPrecision, memoryMiB: copy.teacherCache?.memoryMiB },
  };
}

export function describeSelection(selection: BlockSelection): string {
  if (Array.isArray(selection)) return `[${selection.join(', ')}]`;
  if ('last' in selection) return `{ last: ${selection.last} }`;
  return `{ from: ${selection.from}, to: ${selection.to} }`;
}

/** The selection as ascending indices when it does not depend on the backbone, else undefined. */
export function fixedBlocks(selection: BlockSelection): number[] | undefined {
  if (Array.isArray(selection)) return [...selection].sort((a, b) => a - b);
  if ('last' in selection) return undefined;
  return Array.from({ length: selection.to - selection.from }, (_, i) => selection.from + i);
}

/** The selection as ascending indices for a backbone of `depth` blocks; throws when it does not fit. */
export function selectBlocks(selection: BlockSelection, depth: number, backboneId: string): number[] {
  const where = `distiller "transformaly": option blocks ${describeSelection(selection)}`;
  if (!Array.isArray(selection) && 'last' in selection) {
    if (selection.last > depth) {
      throw new Error(`${where} asks for the last ${selection.last} blocks, but the backbone ${backboneId} has only ${depth} blocks`);
    }
    return Array.from({ length: selection.last }, (_, i) => depth - selection.last + i);
  }
  const blocks = fixedBlocks(selection)!;
  const outside = blocks.filter((b) => b >= depth);
  if (outside.length > 0) {
    throw new Error(
      `${where} selects block${outside.length > 1 ? 's' : ''} ${outside.join(', ')}, but the backbone ${backboneId} has ${depth} blocks ` +
        `(0-based: 0..${depth - 1}); e.g. use { from: ${Math.min(2, depth - 1)}, to: ${depth} } or { last: ${Math.min(depth, 10)} }`,
    );
  }
  return blocks;
}
