// The engine behind the stand-in onnxruntime module: `describe MODEL` prints its metadata_props, inputs and outputs;
// `run MODEL DIR NAME...` runs it on DIR/NAME.bin (+ NAME.json: dtype, shape) and writes DIR/out-<output>.bin.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';

const [command, model, dir, ...names] = process.argv.slice(2);
if (command === 'describe') {
  const proto = onnxProto.onnx.ModelProto.decode(readFileSync(model));
  const session = await ort.InferenceSession.create(model);
  const metadata = Object.fromEntries(proto.metadataProps.map((p) => [p.key, p.value]));
  process.stdout.write(JSON.stringify({ metadata, inputs: session.inputNames, outputs: session.outputNames }));
} else if (command === 'run') {
  const types = { float32: Float32Array, float64: Float64Array, uint8: Uint8Array };
  const feeds = {};
  for (const name of names) {
    const { dtype, shape } = JSON.parse(readFileSync(join(dir, `${name}.json`), 'utf8'));
    const bytes = readFileSync(join(dir, `${name}.bin`));
    const data = new types[dtype](bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    feeds[name] = new ort.Tensor(dtype, data, shape);
  }
  const session = await ort.InferenceSession.create(model);
  const out = await session.run(feeds);
  const shapes = {};
  for (const [name, tensor] of Object.entries(out)) {
    writeFileSync(join(dir, `out-${name}.bin`), new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength));
    shapes[name] = { dtype: tensor.type, shape: tensor.dims };
  }
  process.stdout.write(JSON.stringify(shapes));
} else {
  throw new Error(`unknown command ${command}`);
}
