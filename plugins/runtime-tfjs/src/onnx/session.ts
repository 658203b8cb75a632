// An ONNX graph as a tfjs InferenceSession: constants are uploaded once (in the layouts their consumers want), and
// each run executes only the nodes the requested outputs need, freeing every intermediate after its last use.
import * as tf from '@tensorflow/tfjs-core';
import { checkSessionFeeds, checkSessionOutputs } from '@transformaly/core';
import type { InferenceSession, OnnxModel, Tensor } from '@transformaly/core';
import { loadOnnxModel, onnxTypeName, ONNX_DATA_TYPE, type GraphNode, type LoadedModel } from './model.js';
import { throwOnDeviceError } from '../webgpu/device.js';
import { depthwiseFilter, OPS, type ConstantLayout, type OpContext, type OpDef } from './ops.js';

interface CompiledNode {
  node: GraphNode;
  op: OpDef;
  ctx: OpContext;
}

interface Plan {
  nodes: CompiledNode[];
  /** Per node, the values whose last reader it is. */
  release: string[][];
}

function derive(tensor: tf.Tensor, layout: ConstantLayout): tf.Tensor {
  if (layout === 'transpose') {
    if (tensor.rank !== 2) throw new Error(`a transposed constant must be 2-D, got dims [${tensor.shape.join(', ')}]`);
    return tf.transpose(tensor);
  }
  if (tensor.rank !== 4) throw new Error(`a convolution filter must be 4-D, got dims [${tensor.shape.join(', ')}]`);
  if (layout === 'hwio') return tf.transpose(tensor, [2, 3, 1, 0]);
  return depthwiseFilter(tensor, Number(layout.slice('depthwise:'.length)));
}

function unsupportedOps(model: LoadedModel): string | undefined {
  const missing = new Map<string, string>();
  for (const node of model.nodes) {
    const known = (node.domain === '' || node.domain === 'ai.onnx') && OPS.has(node.opType);
    const op = node.domain === '' || node.domain === 'ai.onnx' ? node.opType : `${node.domain}.${node.opType}`;
    if (!known && !missing.has(op)) missing.set(op, node.name);
  }
  if (missing.size === 0) return undefined;
  const list = [...missing].map(([op, node]) => `${op} (node "${node}")`).join(', ');
  return `runtime-tfjs: the model uses operator(s) that runtime-tfjs does not implement: ${list}. Supported: ${[...OPS.keys()].sort().join(', ')}`;
}

/** Compiles a model into a session whose runs happen on the backend that `activate` selects. */
export async function createTfjsSession(
  model: OnnxModel,
  defaultOutputs: string[] | undefined,
  activate: () => Promise<void>,
  onDispose: () => void,
  copyOutputs: boolean,
): Promise<TfjsSession> {
  const loaded = await loadOnnxModel(model);
  const problem = unsupportedOps(loaded);
  if (problem) throw new Error(problem);
  for (const input of loaded.inputs) {
    if (input.elemType !== ONNX_DATA_TYPE.FLOAT) {
      throw new Error(`runtime-tfjs: model input '${input.name}' is ${onnxTypeName(input.elemType)}; only float32 inputs are supported`);
    }
  }
  // Every value must be defined before it is read: a malformed graph fails here, not halfway through a run.
  const defined = new Set<string>([...loaded.inputs.map((i) => i.name), ...loaded.initializers.keys()]);
  for (const node of loaded.nodes) {
    for (const input of node.inputs) {
      if (input !== '' && !defined.has(input)) throw new Error(`runtime-tfjs: node "${node.name}" (${node.opType}) reads "${input}" before it is defined`);
    }
    for (const output of node.outputs) if (output !== '') defined.add(output);
  }
  for (const output of loaded.outputs) {
    if (!defined.has(output)) throw new Error(`runtime-tfjs: graph output "${output}" is never produced`);
  }
  await activate();
  return new TfjsSession(loaded, defaultOutputs, activate, onDispose, copyOutputs);
}

export class TfjsSession implements InferenceSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  private readonly inputDims: Map<string, Array<number | string> | undefined>;
  /** Initializers and Constant outputs, as uploaded. */
  private readonly constants = new Map<string, tf.Tensor>();
  /** Constants in the layouts their consumers asked for, keyed `name|layout`. */
  private readonly derived = new Map<string, tf.Tensor>();
  /** Initializers that exist only in derived layouts. */
  private readonly derivedOnly = new Set<string>();
  private readonly nodes: CompiledNode[];
  private readonly plans = new Map<string, Plan>();
  private disposed = false;

  constructor(
    model: LoadedModel,
    private readonly defaultOutputs: string[] | undefined,
    private readonly activate: () => Promise<void>,
    private readonly onDispose: () => void,
    /** Whether output data must be copied: the cpu backend's dataSync returns the tensor's own storage. */
    private readonly copyOutputs: boolean,
  ) {
    this.inputNames = model.inputs.map((i) => i.name);
    this.outputNames = [...model.outputs];
    this.inputDims = new Map(model.inputs.map((i) => [i.name, i.dims]));
    try {
      this.nodes = this.upload(model);
    } catch (error) {
      this.release();
      throw error;
    }
    if (defaultOutputs) checkSessionOutputs('runtime-tfjs', this.outputNames, defaultOutputs);
  }

  /** Uploads the constants (each only in the layouts it is used in) and binds every node to its operator. */
  private upload(model: LoadedModel): CompiledNode[] {
    const plainUses = new Map<string, number>();
    const layouts = new Map<string, Set<ConstantLayout>>();
    const ops: Array<{ node: GraphNode; op: OpDef }> = [];
    for (const node of model.nodes) {
      const op = OPS.get(node.opType)!;
      if (node.opType === 'Constant') {
        // Constants are evaluated once, here, and then behave like initializers.
        const value = tf.keep(op.run([], { node, opset: model.opset, constant: () => undefined }) as tf.Tensor);
        this.constants.set(node.outputs[0], value);
        continue;
      }
      ops.push({ node, op });
      const asked = new Map((op.constantLayouts?.(node) ?? []).map(([index, layout]) => [index, layout]));
      node.inputs.forEach((name, index) => {
        const layout = asked.get(index);
        if (layout !== undefined && model.initializers.has(name)) {
          const set = layouts.get(name) ?? new Set();
          set.add(layout);
          layouts.set(name, set);
        } else plainUses.set(name, (plainUses.get(name) ?? 0) + 1);
      });
    }
    for (const name of model.outputs) plainUses.set(name, (plainUses.get(name) ?? 0) + 1);

    for (const [name, host] of model.initializers) {
      const uploaded = tf.tensor(host.data, host.dims, host.dtype);
      for (const layout of layouts.get(name) ?? []) {
        try {
          this.derived.set(`${name}|${layout}`, tf.keep(tf.tidy(() => derive(uploaded, layout))));
        } catch (error) {
          uploaded.dispose();
          throw new Error(`runtime-tfjs: initializer "${name}": ${(error as Error).message}`, { cause: error });
        }
      }
      // A weight read only through a derived layout (a transposed Gemm weight, a convolution filter) is not kept
      // twice.
      if (plainUses.has(name) || !layouts.has(name)) this.constants.set(name, uploaded);
      else {
        uploaded.dispose();
        this.derivedOnly.add(name);
      }
    }

    return ops.map(({ node, op }) => ({
      node,
      op,
      ctx: {
        node,
        opset: model.opset,
        constant: (index: number, layout: ConstantLayout) => this.derived.get(`${node.inputs[index]}|${layout}`),
      },
    }));
  }

  /** The nodes that the outputs need, in graph order, and when each value can be freed. */
  private plan(outputs: readonly string[]): Plan {
    const key = outputs.join('\u0000');
    const cached = this.plans.get(key);
    if (cached) return cached;
    const needed = new Set(outputs);
    const keep: CompiledNode[] = [];
    for (let i = this.nodes.length - 1; i >= 0; i--) {
      const compiled = this.nodes[i];
      if (!compiled.node.outputs.some((o) => needed.has(o))) continue;
      keep.push(compiled);
      for (const input of compiled.node.inputs) if (input !== '') needed.add(input);
    }
    keep.reverse();
    const lastUse = new Map<string, number>();
    keep.forEach((compiled, i) => {
      for (const input of compiled.node.inputs) if (input !== '') lastUse.set(input, i);
    });
    const release: string[][] = keep.map(() => []);
    for (const [name, i] of lastUse) if (!outputs.includes(name)) release[i].push(name);
    const plan = { nodes: keep, release };
    this.plans.set(key, plan);
    return plan;
  }

  async run(feeds: Record<string, Tensor>, outputs?: string[]): Promise<Record<string, Tensor>> {
    if (this.disposed) throw new Error('runtime-tfjs: run() on a disposed session');
    const wanted = outputs ?? this.defaultOutputs ?? [...this.outputNames];
    checkSessionOutputs('runtime-tfjs', this.outputNames, wanted);
    checkSessionFeeds('runtime-tfjs', this.inputNames, feeds, (name) => this.inputDims.get(name));
    await this.activate();
    if (this.disposed) throw new Error('runtime-tfjs: run() on a disposed session');
    const plan = this.plan(wanted);
    // The graph runs synchronously, so no other run (of any session or backend) interleaves with it; only the
    // outputs are read back, asynchronously (a GPU backend cannot read synchronously).
    const produced = tf.tidy(() => {
      const values = new Map<string, tf.Tensor>();
      // Several names can hold the same tensor object (an op may pass one through); it is freed with the last.
      const holders = new Map<tf.Tensor, number>();
      const bind = (name: string, t: tf.Tensor) => {
        values.set(name, t);
        holders.set(t, (holders.get(t) ?? 0) + 1);
      };
      const constantSet = new Set(this.constants.values());
      const lookup = (name: string): tf.Tensor => {
        const t = values.get(name) ?? this.constants.get(name);
        if (t === undefined) throw new Error(`runtime-tfjs: value "${name}" is not available`);
        return t;
      };
      // A constant kept only in a derived layout reaches its node through `ctx.constant`.
      const input = (name: string) => (name === '' || this.derivedOnly.has(name) ? undefined : lookup(name));
      for (const name of this.inputNames) bind(name, tf.tensor(feeds[name].data, feeds[name].dims, 'float32'));
      plan.nodes.forEach(({ node, op, ctx }, i) => {
        const inputs = node.inputs.map(input);
        let out: tf.Tensor | Array<tf.Tensor | undefined>;
        try {
          out = op.run(inputs, ctx);
        } catch (error) {
          const shapes = inputs.map((t) => (t === undefined ? '-' : `${t.dtype}[${t.shape.join(', ')}]`)).join(', ');
          throw new Error(`runtime-tfjs: node "${node.name}" (${node.opType}) failed on inputs (${shapes}): ${(error as Error).message}`, {
            cause: error,
          });
        }
        const outs = Array.isArray(out) ? out : [out];
        node.outputs.forEach((name, k) => {
          const t = outs[k];
          if (name === '') return;
          if (t === undefined) throw new Error(`runtime-tfjs: node "${node.name}" (${node.opType}) produced no output ${k} ("${name}")`);
          bind(name, t);
        });
        for (const name of plan.release[i]) {
          const t = values.get(name);
          if (t === undefined) continue;
          values.delete(name);
          const left = (holders.get(t) ?? 1) - 1;
          holders.set(t, left);
          if (left === 0 && !constantSet.has(t)) t.dispose();
        }
      });
      return wanted.map((name) => {
        const t = lookup(name);
        if (t.dtype !== 'float32') throw new Error(`runtime-tfjs: model output '${name}' is ${t.dtype}; only float32 outputs are supported`);
        // A fresh handle per name: one tensor may be several outputs, and each handle is freed once read.
        return t.clone();
      });
    });
    const result: Record<string, Tensor> = {};
    try {
      const read = await Promise.all(produced.map((t) => t.data() as Promise<Float32Array>));
      wanted.forEach((name, i) => {
        result[name] = { dims: [...produced[i].shape], data: this.copyOutputs ? read[i].slice() : read[i] };
      });
    } finally {
      for (const t of produced) t.dispose();
    }
    throwOnDeviceError('a session run');
    return result;
  }

  private release(): void {
    for (const t of this.constants.values()) t.dispose();
    for (const t of this.derived.values()) t.dispose();
    this.constants.clear();
    this.derived.clear();
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    this.release();
    this.onDispose();
  }
}

