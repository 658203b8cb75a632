import { readSafetensors } from '../io/safetensors.js';
import { Rng } from '../numeric/rng.js';
import type { BlockSpec, Tensor } from '../types.js';

/**
 * Shapes of one transformer block's tensors (a teacher's or a student's), in the timm names and torch layouts of
 * `Backbone.blockWeights`: the one definition that backbones, trainers and the distiller share.
 */
export function studentShapes(spec: Pick<BlockSpec, 'width' | 'mlpDim' | 'qkvBias'>): Record<string, number[]> {
  const { width: d, mlpDim: m } = spec;
  const shapes: Record<string, number[]> = {
    'norm1.weight': [d],
    'norm1.bias': [d],
    'attn.qkv.weight': [3 * d, d],
    'attn.qkv.bias': [3 * d],
    'attn.proj.weight': [d, d],
    'attn.proj.bias': [d],
    'norm2.weight': [d],
    'norm2.bias': [d],
    'mlp.fc1.weight': [m, d],
    'mlp.fc1.bias': [m],
    'mlp.fc2.weight': [d, m],
    'mlp.fc2.bias': [d],
  };
  if (!spec.qkvBias) delete shapes['attn.qkv.bias'];
  return shapes;
}

/** The standard deviation of the students' initial biases (Transformaly's initialisation). */
export const STUDENT_BIAS_STD = 1e-6;

/**
 * A student's random initial weights, as in Transformaly: xavier-uniform weights (q, k and v each drawn on its own
 * D x D shape, then stacked into the [3D, D] qkv matrix), biases from N(0, 1e-6^2), LayerNorm weight 1 and bias 0.
 * The same spec and seed always give the same weights.
 */
export function initStudentWeights(spec: BlockSpec, seed: number): Record<string, Tensor> {
  if (!Number.isInteger(seed) || seed < 0) throw new Error(`initStudentWeights: seed must be a non-negative integer, got ${seed}`);
  const rng = new Rng(seed);
  const { width: d, mlpDim: m } = spec;
  const xavier = (out: Float32Array, offset: number, rows: number, cols: number) => {
    const bound = Math.sqrt(6 / (rows + cols));
    for (let i = 0; i < rows * cols; i++) out[offset + i] = (2 * rng.next() - 1) * bound;
  };
  const normal = (n: number) => {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = rng.normal() * STUDENT_BIAS_STD;
    return out;
  };
  const tensor = (dims: number[], data: Float32Array): Tensor => ({ dims, data });
  const weights: Record<string, Tensor> = {};
  // Fixed draw order: q, k, v, qkv bias, proj, fc1, fc2 (weight then bias).
  const qkv = new Float32Array(3 * d * d);
  for (let part = 0; part < 3; part++) xavier(qkv, part * d * d, d, d);
  weights['attn.qkv.weight'] = tensor([3 * d, d], qkv);
  if (spec.qkvBias) weights['attn.qkv.bias'] = tensor([3 * d], normal(3 * d));
  const linear = (name: string, rows: number, cols: number) => {
    const w = new Float32Array(rows * cols);
    xavier(w, 0, rows, cols);
    weights[`${name}.weight`] = tensor([rows, cols], w);
    weights[`${name}.bias`] = tensor([rows], normal(rows));
  };
  linear('attn.proj', d, d);
  linear('mlp.fc1', m, d);
  linear('mlp.fc2', d, m);
  for (const norm of ['norm1', 'norm2']) {
    weights[`${norm}.weight`] = tensor([d], new Float32Array(d).fill(1));
    weights[`${norm}.bias`] = tensor([d], new Float32Array(d));
  }
  return weights;
}

/** The initialisation seed of block `block`'s student: distinct per block, independent of which others are selected. */
export function studentSeed(seed: number, block: number): number {
  return seed * 4096 + block;
}

/**
 * Reads initial student weights for `blocks` from a safetensors file keyed `block{i}.<timm name>`. Other blocks in
 * the file are ignored; a missing or misshapen tensor is an error naming the file and key.
 */
export async function readStudentWeights(path: string, blocks: readonly number[], spec: BlockSpec): Promise<Map<number, Record<string, Tensor>>> {
  const { arrays } = await readSafetensors(path);
  const shapes = studentShapes(spec);
  const out = new Map<number, Record<string, Tensor>>();
  for (const block of blocks) {
    const weights: Record<string, Tensor> = {};
    for (const [name, dims] of Object.entries(shapes)) {
      const key = `block${block}.${name}`;
      const entry = arrays[key];
      if (!entry) {
        const present = [...new Set(Object.keys(arrays).map((k) => k.split('.')[0]))].join(', ') || 'none';
        throw new Error(`initial student weights ${path}: tensor "${key}" is missing (blocks in the file: ${present})`);
      }
      if (entry.dims.length !== dims.length || entry.dims.some((v, i) => v !== dims[i])) {
        throw new Error(`initial student weights ${path}: tensor "${key}" has shape [${entry.dims}], expected [${dims}] for this backbone's blocks`);
      }
      if (!(entry.data instanceof Float32Array || entry.data instanceof Float64Array)) {
        throw new Error(`initial student weights ${path}: tensor "${key}" is not floating point`);
      }
      weights[name] = { dims: [...dims], data: Float32Array.from(entry.data) };
    }
    out.set(block, weights);
  }
  return out;
}

export function cloneWeights(weights: Record<string, Tensor>): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(weights)) out[name] = { dims: [...t.dims], data: t.data.slice() };
  return out;
}
