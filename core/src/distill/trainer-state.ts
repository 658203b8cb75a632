import type { AdamSettings, ArrayEntry, BlockSpec, JsonObject, StageState } from '../types.js';

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
