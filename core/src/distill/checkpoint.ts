import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';
import type { ArrayEntry, JsonObject, JsonValue, StageState, Tensor } from '../types.js';

/** The one file a distiller keeps in its checkpoint folder; replaced atomically after every epoch. */
export const CHECKPOINT_FILE = 'distiller-checkpoint.safetensors';
const META_KEY = 'transformaly.distiller.checkpoint';
const FORMAT = 'transformaly-distiller-checkpoint/1';

/** Per-epoch losses, one row per completed epoch and one column per student (in block order). */
export interface LossHistory {
  train: number[][];
  /** Mean held-out loss; null when there are no held-out images. */
  validation: (number | null)[][];
}

export interface StudentCheckpoint {
  block: number;
  /** The trainer's full state (weights, Adam moments, step count) at the end of the last completed epoch. */
  trainer: StageState;
  /** Weights of the epoch with the lowest held-out loss so far. */
  best: Record<string, Tensor>;
  /** 0-based epoch of `best`. */
  bestEpoch: number;
  bestLoss: number | null;
}

export interface Checkpoint {
  /** What the students were trained with; a checkpoint is only resumed by a fit with the same setup. */
  setup: JsonObject;
  /** Completed epochs. */
  epochsDone: number;
  batchesPerEpoch: number | null;
  students: StudentCheckpoint[];
  history: LossHistory;
}

export function checkpointPath(dir: string): string {
  return join(dir, CHECKPOINT_FILE);
}

/** Writes the checkpoint atomically: a reader (or a resumed fit) sees the previous checkpoint or this one, whole. */
export async function writeCheckpoint(dir: string, checkpoint: Checkpoint): Promise<void> {
  const arrays: Record<string, ArrayEntry> = {};
  const students: JsonValue[] = [];
  for (const s of checkpoint.students) {
    for (const [name, entry] of Object.entries(s.trainer.arrays)) arrays[`block${s.block}/trainer/${name}`] = entry;
    for (const [name, t] of Object.entries(s.best)) arrays[`block${s.block}/best/${name}`] = t;
    students.push({ block: s.block, bestEpoch: s.bestEpoch, bestLoss: s.bestLoss, trainerMeta: s.trainer.meta });
  }
  const meta: JsonObject = {
    format: FORMAT,
    setup: checkpoint.setup,
    epochsDone: checkpoint.epochsDone,
    batchesPerEpoch: checkpoint.batchesPerEpoch,
    students,
    history: checkpoint.history as unknown as JsonObject,
  };
  await writeSafetensors(checkpointPath(dir), arrays, { [META_KEY]: JSON.stringify(meta) });
}

/** Reads the checkpoint in `dir`, or returns undefined when there is none. */
export async function readCheckpoint(dir: string): Promise<Checkpoint | undefined> {
  const path = checkpointPath(dir);
  try {
    await access(path);
  } catch {
    return undefined;
  }
  const { metadata, arrays } = await readSafetensors(path);
  const bad = (why: string) => new Error(`distiller checkpoint ${path}: ${why}; delete it to start training afresh`);
  let meta: any;
  try {
    meta = JSON.parse(metadata[META_KEY] ?? 'null');
  } catch {
    throw bad('its metadata is not valid JSON');
  }
  if (!meta || meta.format !== FORMAT) throw bad(`not a distiller checkpoint of format ${FORMAT}`);
  const students: StudentCheckpoint[] = (meta.students as any[]).map((s) => {
    const trainerArrays: Record<string, ArrayEntry> = {};
    const best: Record<string, Tensor> = {};
    for (const [key, entry] of Object.entries(arrays)) {
      const [owner, kind, ...rest] = key.split('/');
      if (owner !== `block${s.block}`) continue;
      const name = rest.join('/');
      if (kind === 'trainer') trainerArrays[name] = entry;
      else if (kind === 'best') {
        if (!(entry.data instanceof Float32Array)) throw bad(`tensor "${key}" is not float32`);
        best[name] = { dims: entry.dims, data: entry.data };
      }
    }
    if (Object.keys(best).length === 0) throw bad(`no best weights for block ${s.block}`);
    return { block: s.block, trainer: { meta: s.trainerMeta, arrays: trainerArrays }, best, bestEpoch: s.bestEpoch, bestLoss: s.bestLoss };
  });
  return {
    setup: meta.setup,
    epochsDone: meta.epochsDone,
    batchesPerEpoch: meta.batchesPerEpoch,
    students,
    history: meta.history,
  };
}

/** The first field where two setups differ, as `field: saved X, now Y`; undefined when equal. */
export function setupDifference(saved: JsonValue, now: JsonValue, at = ''): string | undefined {
  if (JSON.stringify(saved) === JSON.stringify(now)) return undefined;
  if (saved && now && typeof saved === 'object' && typeof now === 'object' && !Array.isArray(saved) && !Array.isArray(now)) {
    for (const key of new Set([...Object.keys(saved), ...Object.keys(now)])) {
      const diff = setupDifference((saved as JsonObject)[key] ?? null, (now as JsonObject)[key] ?? null, at ? `${at}.${key}` : key);
      if (diff) return diff;
    }
  }
  return `${at || 'setup'}: saved ${JSON.stringify(saved)}, now ${JSON.stringify(now)}`;
}
