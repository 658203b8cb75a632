import type { InferenceSession, Tensor } from '@transformaly/core';

/**
 * Runs `session` over feeds whose first dimension is the batch, `batchSize` rows at a time, and concatenates every
 * output along its first dimension. Inputs are sliced as views (no copy); each output is written once into a buffer
 * sized for all rows. Every feed must have the same number of rows, and every output one row per input row.
 */
export async function runBatched(
  session: InferenceSession,
  feeds: Record<string, Tensor>,
  batchSize: number,
  outputs?: string[],
): Promise<Record<string, Tensor>> {
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new Error(`runBatched: batchSize must be a positive integer, got ${String(batchSize)}`);
  }
  const names = Object.keys(feeds);
  if (names.length === 0) throw new Error('runBatched: no feeds given');
  let rows: number | undefined;
  for (const name of names) {
    const { dims } = feeds[name];
    if (dims.length === 0) throw new Error(`runBatched: feed '${name}' is a scalar and has no batch dimension`);
    if (rows === undefined) rows = dims[0];
    else if (dims[0] !== rows) {
      throw new Error(`runBatched: feed '${name}' has ${dims[0]} rows but '${names[0]}' has ${rows}`);
    }
  }
  const total = rows as number;
  if (total <= batchSize) return session.run(feeds, outputs);

  const merged: Record<string, Tensor> = {};
  for (let start = 0; start < total; start += batchSize) {
    const end = Math.min(total, start + batchSize);
    const batch: Record<string, Tensor> = {};
    for (const name of names) {
      const { dims, data } = feeds[name];
      const rowSize = dims.length === 1 ? 1 : dims.slice(1).reduce((a, b) => a * b, 1);
      batch[name] = { dims: [end - start, ...dims.slice(1)], data: data.subarray(start * rowSize, end * rowSize) };
    }
    const result = await session.run(batch, outputs);
    for (const [name, tensor] of Object.entries(result)) {
      if (tensor.dims.length === 0 || tensor.dims[0] !== end - start) {
        throw new Error(
          `runBatched: output '${name}' has dims [${tensor.dims.join(', ')}]; expected ${end - start} rows (one per input row)`,
        );
      }
      const rowSize = tensor.data.length / (end - start);
      let target = merged[name];
      if (target === undefined) {
        target = { dims: [total, ...tensor.dims.slice(1)], data: new Float32Array(total * rowSize) };
        merged[name] = target;
      } else if (target.dims.slice(1).join(',') !== tensor.dims.slice(1).join(',')) {
        throw new Error(
          `runBatched: output '${name}' changed shape between batches: [${target.dims.slice(1).join(', ')}] then [${tensor.dims.slice(1).join(', ')}]`,
        );
      }
      target.data.set(tensor.data, start * rowSize);
    }
  }
  return merged;
}
