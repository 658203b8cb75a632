import type { Tensor } from '../types.js';

// What every runtime's InferenceSession checks before a run, with the same messages; `who` is the runtime
// (`runtime-onnx`, `runtime-tfjs`) that prefixes them.

function elementCount(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

/** Throws unless every name in `wanted` is one of the model's outputs. */
export function checkSessionOutputs(who: string, outputNames: readonly string[], wanted: readonly string[]): void {
  for (const name of wanted) {
    if (!outputNames.includes(name)) throw new Error(`${who}: the model has no output '${name}' (outputs: ${outputNames.join(', ')})`);
  }
}

/**
 * Throws unless `feeds` has exactly the model's inputs, each a Float32Array with as many values as its dims need and,
 * where `declaredDims` knows the input's dims, those dims (a string is a named dimension and matches any size).
 */
export function checkSessionFeeds(
  who: string,
  inputNames: readonly string[],
  feeds: Record<string, Tensor>,
  declaredDims?: (input: string) => readonly (number | string)[] | undefined,
): void {
  for (const name of inputNames) {
    const tensor = feeds[name];
    if (tensor === undefined) throw new Error(`${who}: missing feed for model input '${name}'`);
    if (!(tensor.data instanceof Float32Array)) throw new Error(`${who}: feed '${name}' must hold a Float32Array`);
    const count = elementCount(tensor.dims);
    if (tensor.data.length !== count) {
      throw new Error(`${who}: feed '${name}' has ${tensor.data.length} values but dims [${tensor.dims.join(', ')}] need ${count}`);
    }
    const declared = declaredDims?.(name);
    if (declared) {
      const fits = declared.length === tensor.dims.length && declared.every((d, i) => typeof d !== 'number' || d === tensor.dims[i]);
      if (!fits) throw new Error(`${who}: feed '${name}' has dims [${tensor.dims.join(', ')}] but the model declares [${declared.join(', ')}]`);
    }
  }
  for (const name of Object.keys(feeds)) {
    if (!inputNames.includes(name)) throw new Error(`${who}: the model has no input '${name}' (inputs: ${inputNames.join(', ')})`);
  }
}
