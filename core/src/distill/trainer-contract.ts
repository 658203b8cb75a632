import type { AdamSettings, ArrayEntry, BlockSpec, JsonObject, StageState, Tensor } from '../types.js';
import { studentShapes } from './init.js';

// What every runtime's StudentTrainer checks and stores the same way: its block, Adam settings, initial weights,
// batches, and its checkpoint format.

/** Throws a message naming the field unless the spec describes a buildable block. */
export function checkBlockSpec(spec: BlockSpec): void {
  for (const field of ['width', 'heads', 'mlpDim', 'tokens'] as const) {
    const value = spec[field];
    if (!Number.isInteger(value) || value < 1) throw new Error(`student block: spec.${field} must be a positive integer, got ${String(value)}`);
  }
  if (spec.width % spec.heads !== 0) throw new Error(`student block: spec.width (${spec.width}) must be a multiple of spec.heads (${spec.heads})`);
  if (!(spec.layerNormEps > 0) || !Number.isFinite(spec.layerNormEps)) {
    throw new Error(`student block: spec.layerNormEps must be a positive number, got ${String(spec.layerNormEps)}`);
  }
  if (typeof spec.qkvBias !== 'boolean') throw new Error(`student block: spec.qkvBias must be a boolean, got ${String(spec.qkvBias)}`);
}

/** Throws a message naming the field unless the settings are ones torch.optim.Adam accepts. */
export function checkAdamSettings(adam: AdamSettings): void {
  const check = (ok: boolean, field: string, expected: string, value: number) => {
    if (!ok) throw new Error(`Adam settings: ${field} must be ${expected}, got ${String(value)}`);
  };
  check(Number.isFinite(adam.lr) && adam.lr >= 0, 'lr', 'a finite number >= 0', adam.lr);
  check(Number.isFinite(adam.beta1) && adam.beta1 >= 0 && adam.beta1 < 1, 'beta1', 'in [0, 1)', adam.beta1);
  check(Number.isFinite(adam.beta2) && adam.beta2 >= 0 && adam.beta2 < 1, 'beta2', 'in [0, 1)', adam.beta2);
  check(Number.isFinite(adam.eps) && adam.eps >= 0, 'eps', 'a finite number >= 0', adam.eps);
}

/**
 * Checks a trainer's initial weights (timm names, torch layouts; `attn.qkv.bias` exactly when `spec.qkvBias`) and
 * returns the block's weight shapes in order.
 */
export function checkInitialWeights(spec: BlockSpec, initialWeights: Record<string, Tensor>): Map<string, number[]> {
  const shapes = new Map(Object.entries(studentShapes(spec)));
  for (const [name, dims] of shapes) {
    const tensor = initialWeights[name];
    const count = dims.reduce((a, b) => a * b, 1);
    if (tensor === undefined) throw new Error(`student trainer: initial weight "${name}" is missing (expected dims [${dims.join(', ')}])`);
    if (tensor.dims.length !== dims.length || tensor.dims.some((d, i) => d !== dims[i])) {
      throw new Error(`student trainer: initial weight "${name}" has dims [${tensor.dims.join(', ')}], expected [${dims.join(', ')}]`);
    }
    if (!(tensor.data instanceof Float32Array) || tensor.data.length !== count) {
      throw new Error(`student trainer: initial weight "${name}" must hold ${count} float32 values`);
    }
  }
  for (const name of Object.keys(initialWeights)) {
    if (!shapes.has(name)) {
      const hint = name === 'attn.qkv.bias' ? ' (spec.qkvBias is false)' : '';
      throw new Error(`student trainer: unexpected initial weight "${name}"${hint}; expected ${[...shapes.keys()].join(', ')}`);
    }
  }
  return shapes;
}

/**
 * Every check a runtime's trainer factory makes on its arguments (block spec, Adam settings, initial weights), in that
 * order; returns the block's weight shapes in order.
 */
export function checkTrainerArguments(spec: BlockSpec, initialWeights: Record<string, Tensor>, adam: AdamSettings): Map<string, number[]> {
  checkBlockSpec(spec);
  checkAdamSettings(adam);
  return checkInitialWeights(spec, initialWeights);
}

/** Checks a batch of block inputs and targets, [N, tokens, width] float32 each, and returns N. */
export function checkTrainingBatch(spec: BlockSpec, input: Tensor, target: Tensor): number {
  const { tokens, width } = spec;
  for (const [what, t] of [
    ['input', input],
    ['target', target],
  ] as const) {
    const n = t.dims[0];
    if (t.dims.length !== 3 || !Number.isInteger(n) || n < 1 || t.dims[1] !== tokens || t.dims[2] !== width) {
      throw new Error(`student trainer: ${what} has dims [${t.dims.join(', ')}], expected [N, ${tokens}, ${width}]`);
    }
    if (!(t.data instanceof Float32Array) || t.data.length !== n * tokens * width) {
      throw new Error(`student trainer: ${what} must hold ${n * tokens * width} float32 values`);
    }
  }
  if (input.dims[0] !== target.dims[0]) throw new Error(`student trainer: input has ${input.dims[0]} images but target has ${target.dims[0]}`);
  return input.dims[0];
}

/**
 * The checkpoint format of a `StudentTrainer`, shared by every runtime so that a fit checkpointed on one resumes on
 * another: `meta { format, step, spec, adam }`; arrays `weight/<name>`, `exp_avg/<name>`, `exp_avg_sq/<name>`.
 */
export const TRAINER_STATE_FORMAT = 'transformaly.student-trainer.adam';

const SPEC_FIELDS = ['width', 'heads', 'mlpDim', 'tokens', 'layerNormEps', 'qkvBias'] as const;
const KINDS = ['weight', 'exp_avg', 'exp_avg_sq'] as const;
export type TrainerArrayKind = (typeof KINDS)[number];

/** Builds a trainer's state; `read(kind, name)` returns a float32 copy of that array. */
export function encodeTrainerState(
  spec: BlockSpec,
  adam: AdamSettings,
  step: number,
  shapes: ReadonlyMap<string, readonly number[]>,
  read: (kind: TrainerArrayKind, name: string) => Float32Array,
): StageState {
  const arrays: Record<string, ArrayEntry> = {};
  for (const [name, dims] of shapes) for (const kind of KINDS) arrays[`${kind}/${name}`] = { dims: [...dims], data: read(kind, name) };
  const specMeta: JsonObject = {};
  for (const field of SPEC_FIELDS) specMeta[field] = spec[field];
  return { meta: { format: TRAINER_STATE_FORMAT, step, spec: specMeta, adam: { ...adam } }, arrays };
}

/**
 * Checks a trainer state against the trainer's block and returns its step and arrays (float32), validating
 * everything first so that a bad state can leave the trainer as it was.
 */
export function decodeTrainerState(
  state: StageState,
  spec: BlockSpec,
  shapes: ReadonlyMap<string, readonly number[]>,
): { step: number; arrays: { kind: TrainerArrayKind; name: string; data: Float32Array }[] } {
  const where = 'student trainer state';
  const meta = state.meta;
  if (meta.format !== TRAINER_STATE_FORMAT) {
    throw new Error(`${where}: meta.format is ${JSON.stringify(meta.format)}, expected ${JSON.stringify(TRAINER_STATE_FORMAT)}`);
  }
  const step = meta.step;
  if (typeof step !== 'number' || !Number.isInteger(step) || step < 0) {
    throw new Error(`${where}: meta.step must be a non-negative integer, got ${JSON.stringify(step)}`);
  }
  const saved = meta.spec as JsonObject | undefined;
  for (const field of SPEC_FIELDS) {
    if (saved?.[field] !== spec[field]) {
      throw new Error(`${where}: meta.spec.${field} is ${JSON.stringify(saved?.[field])} but this trainer's block has ${JSON.stringify(spec[field])}`);
    }
  }
  const arrays: { kind: TrainerArrayKind; name: string; data: Float32Array }[] = [];
  for (const [name, dims] of shapes) {
    const count = dims.reduce((a, b) => a * b, 1);
    for (const kind of KINDS) {
      const key = `${kind}/${name}`;
      const entry = state.arrays[key];
      if (entry === undefined) throw new Error(`${where}: array "${key}" is missing`);
      if (entry.dims.length !== dims.length || entry.dims.some((d, i) => d !== dims[i]) || entry.data.length !== count) {
        throw new Error(`${where}: array "${key}" has dims [${entry.dims.join(', ')}], expected [${dims.join(', ')}]`);
      }
      const data = entry.data instanceof Float32Array ? entry.data : entry.data instanceof Float64Array ? Float32Array.from(entry.data) : undefined;
      if (!data) throw new Error(`${where}: array "${key}" must hold float32 values, got ${entry.data.constructor.name}`);
      arrays.push({ kind, name, data });
    }
  }
  return { step, arrays };
}
