// The stage contracts as rules the core checks on every instance a plugin hands it: the methods each kind must have
// (checked when the instance is created, before anything is fitted) and the shape of the states and listings it
// returns (checked on every call). A broken rule is a ContractError naming the plugin, its config slot and the rule.
// The data a stage computes (features, scores: their type, count, width, finiteness) is checked by the Detector.
import { STAGE_KINDS } from '../stages.js';
import type { StageKind, StageState } from '../types.js';
import { PluginError } from './loader.js';

/** Which plugin and config slot a stage instance serves. */
export interface StageOwner {
  plugin: string;
  version?: string;
  slot: string;
}

export class ContractError extends PluginError {
  constructor(
    owner: StageOwner,
    /** The broken rule, e.g. `DensityScorer implements fit, scoreSamples, exportState, importState`. */
    readonly rule: string,
    found: string,
  ) {
    super(owner.plugin, `breaks the rule "${rule}": ${found}`, { stage: owner.slot });
    this.name = 'ContractError';
  }
}

/** Why a method's result breaks its rule, or undefined when it does not. */
type ResultCheck = (result: unknown) => string | undefined;

interface Contract {
  methods: readonly string[];
  /** Instance properties: name -> the rule and its check. */
  properties?: Record<string, [rule: string, check: (value: unknown) => boolean]>;
  /** Per method: the rule its result must follow. */
  results?: Record<string, [rule: string, check: ResultCheck]>;
}

const exportsState: [string, ResultCheck] = ['exportState returns a StageState { meta: object, arrays: { name: { dims, data } } }', (s) => stageStateProblem(s)];

/** The rules of each kind of stage; the interfaces in types.ts say the same in TypeScript. */
export const CONTRACTS: Record<StageKind, Contract> = {
  data: {
    methods: ['classes', 'items'],
    results: {
      classes: ['classes() returns a list of class names', (r) => (Array.isArray(r) && r.every((c) => typeof c === 'string') ? undefined : `got ${describeValue(r)}`)],
      items: ['items(split) returns a list of images { id, label, load() }', (r) => (Array.isArray(r) ? undefined : `got ${describeValue(r)}`)],
    },
  },
  runtime: {
    methods: ['createSession', 'dispose'],
    properties: { name: ['a runtime has a string name', (v) => typeof v === 'string'] },
  },
  backbone: {
    methods: ['forward', 'blockWeights', 'dispose'],
    properties: { info: ['a backbone has info: BackboneInfo', (v) => typeof v === 'object' && v !== null] },
  },
  distiller: {
    methods: ['fit', 'features', 'exportState', 'importState'],
    results: { exportState: exportsState },
  },
  scorer: {
    methods: ['fit', 'scoreSamples', 'exportState', 'importState'],
    results: { exportState: exportsState },
  },
  combiner: {
    methods: ['fit', 'combine', 'exportState', 'importState'],
    results: { exportState: exportsState },
  },
};

const owners = new WeakMap<object, StageOwner>();

/** Who provided a stage instance the core created: for messages that blame the right plugin. */
export function stageOwner(instance: unknown): StageOwner | undefined {
  return typeof instance === 'object' && instance !== null ? owners.get(instance) : undefined;
}

/**
 * Checks the instance's methods and properties now, and returns a view of it whose methods check their results on
 * every call. The view forwards everything else to the instance itself (private fields, getters, `instanceof`).
 */
export function checkedStage<T>(kind: StageKind, instance: T, owner: StageOwner): T {
  const contract = CONTRACTS[kind];
  const name = STAGE_KINDS[kind].contract;
  if (typeof instance !== 'object' || instance === null) {
    throw new ContractError(owner, `create() returns ${STAGE_KINDS[kind].label} (an object implementing ${name})`, `got ${describeValue(instance)}`);
  }
  const target = instance as Record<string, unknown>;
  const missing = contract.methods.filter((m) => typeof target[m] !== 'function');
  if (missing.length > 0) {
    throw new ContractError(
      owner,
      `${name} implements ${contract.methods.join(', ')}`,
      `${missing.length === 1 ? 'method' : 'methods'} ${missing.map((m) => `${m}()`).join(', ')} missing on ${describeValue(instance)}`,
    );
  }
  for (const [property, [rule, check]] of Object.entries(contract.properties ?? {})) {
    if (!check(target[property])) throw new ContractError(owner, `${name}: ${rule}`, `${property} is ${describeValue(target[property])}`);
  }
  const results = contract.results ?? {};
  const view = new Proxy(target, {
    get(t, property) {
      const value = Reflect.get(t, property, t);
      if (typeof value !== 'function' || property === 'constructor') return value;
      const rule = typeof property === 'string' ? results[property] : undefined;
      if (!rule) return value.bind(t);
      return (...args: unknown[]) => {
        const verify = (result: unknown) => {
          const problem = rule[1](result);
          if (problem !== undefined) throw new ContractError(owner, `${name}.${rule[0]}`, problem);
          return result;
        };
        const result = value.apply(t, args);
        return isThenable(result) ? result.then(verify) : verify(result);
      };
    },
    set(t, property, value) {
      return Reflect.set(t, property, value, t);
    },
  });
  owners.set(view, owner);
  owners.set(target, owner);
  return view as T;
}

function isThenable(value: unknown): value is Promise<unknown> {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}

const STATE_ARRAYS = [Float32Array, Float64Array, Int32Array, Uint8Array];

/** Why `value` is not a StageState, or undefined when it is one. */
export function stageStateProblem(value: unknown): string | undefined {
  const s = value as StageState | undefined;
  if (!s || typeof s !== 'object') return `got ${describeValue(value)}`;
  if (!s.meta || typeof s.meta !== 'object' || Array.isArray(s.meta)) return `meta is ${describeValue(s.meta)}, not an object`;
  if (!s.arrays || typeof s.arrays !== 'object' || Array.isArray(s.arrays)) return `arrays is ${describeValue(s.arrays)}, not an object`;
  for (const [name, entry] of Object.entries(s.arrays)) {
    if (!entry || !Array.isArray(entry.dims) || !entry.dims.every((d) => Number.isInteger(d) && d >= 0)) return `arrays.${name}.dims is not a list of sizes`;
    if (!STATE_ARRAYS.some((T) => entry.data instanceof T)) return `arrays.${name}.data is ${describeValue(entry.data)} (allowed: Float32Array, Float64Array, Int32Array, Uint8Array)`;
    const size = entry.dims.reduce((a, b) => a * b, 1);
    if (entry.data.length !== size) return `arrays.${name} has ${entry.data.length} values for dims [${entry.dims.join(', ')}]`;
  }
  return undefined;
}

/** A short description of a value for messages: `an Array of 4 values`, `a Float32Array of 3 values`, `undefined`. */
export function describeValue(value: unknown): string {
  if (value === undefined || value === null) return String(value);
  if (Array.isArray(value)) return `an Array of ${value.length} value${value.length === 1 ? '' : 's'}`;
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name} of ${(value as unknown as ArrayLike<number>).length} values`;
  if (typeof value === 'object') {
    const ctor = (value as object).constructor?.name;
    return ctor && ctor !== 'Object' ? `a ${ctor}` : 'an object';
  }
  if (typeof value === 'function') return 'a function';
  return `${typeof value} ${JSON.stringify(value)}`;
}
