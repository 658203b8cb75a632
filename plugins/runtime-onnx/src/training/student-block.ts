// The student: timm's pre-norm ViT block as ONNX graphs built on the tape, with its weights as graph inputs (timm names,
// torch layouts) so that a weight update needs no new session. It is core's appendVitBlock (core/src/onnx/vit-block.ts)
// written in the tape's differentiable operations; the two agree on the attention scale's place (on the scores).
import type { BlockSpec } from '@transformaly/core';
import { checkBlockSpec, OnnxGraph, studentShapes } from '@transformaly/core';
import { Tape, type Var } from './autodiff.js';

/** Operator sets the student graphs use beyond the default domain (FusedMatMul); pass them to `serializeOnnxModel`. */
export const STUDENT_OPSET_IMPORTS: Readonly<Record<string, number>> = { 'com.microsoft': 1 };

/** Input names of the batch: hidden states entering the teacher block and the teacher block's output, [N, tokens, width]. */
export const STUDENT_INPUT = 'input';
export const STUDENT_TARGET = 'target';
/** Output of the forward graph: per token, the mean over channels of (student - target)^2, [N * tokens]. */
export const STUDENT_TOKEN_DISCREPANCY = 'per_token';

/**
 * Per image, the mean of its tokens' discrepancies (`STUDENT_TOKEN_DISCREPANCY`, [images * tokens]), summed in
 * float64 so that an image's value does not depend on where its row starts in the batch.
 */
export function imageMeans(perToken: Float32Array, images: number): Float64Array {
  const tokens = perToken.length / images;
  const means = new Float64Array(images);
  for (let n = 0; n < images; n++) {
    let sum = 0;
    for (let t = n * tokens; t < (n + 1) * tokens; t++) sum += perToken[t];
    means[n] = sum / tokens;
  }
  return means;
}

/** The student's weights in graph-input (and `Backbone.blockWeights`) order, with their torch shapes. */
export function studentWeightShapes(spec: BlockSpec): Map<string, number[]> {
  return new Map(Object.entries(studentShapes(spec)));
}

interface BlockValues {
  tape: Tape;
  x: Var;
  target: Var;
  weights: Map<string, Var>;
  /** Student output, [N * tokens, width]. */
  y: Var;
  /** Mean over channels of (y - target)^2, [N * tokens]. */
  perToken: Var;
}

function buildBlock(graph: OnnxGraph, spec: BlockSpec, differentiate: { weights: boolean; input: boolean }): BlockValues {
  checkBlockSpec(spec);
  const tape = new Tape(graph, { fusedMatMul: true });
  const { width: D, heads: H, tokens: T } = spec;
  const hd = D / H;
  const x = tape.input(STUDENT_INPUT, ['N', T, D], differentiate.input);
  const target = tape.input(STUDENT_TARGET, ['N', T, D], false);
  const weights = new Map<string, Var>();
  for (const [name, dims] of studentWeightShapes(spec)) weights.set(name, tape.input(name, dims, differentiate.weights));
  const w = (name: string) => weights.get(name)!;
  const linear = { transB: 1 };

  // Every token-wise layer runs on [N*T, D] rows, so the linear layers are single Gemms with the torch [out, in]
  // weight used through transB, and only attention needs 4-D views.
  const x2 = tape.reshape(x, [-1, D], 'x_rows');
  const h1 = tape.layerNorm(x2, w('norm1.weight'), w('norm1.bias'), spec.layerNormEps, 'norm1');
  // Three Gemms on row blocks of the qkv weight rather than one Gemm and a Split of its [N*T, 3D] output: splitting
  // the weight copies 7 MB (ViT-B) instead of 58 MB, and its gradient is a Concat of the three weight gradients.
  const qkvWeights = tape.split(w('attn.qkv.weight'), 0, [D, D, D], ['q.weight', 'k.weight', 'v.weight']);
  const qkvBiases = spec.qkvBias ? tape.split(w('attn.qkv.bias'), 0, [D, D, D], ['q.bias', 'k.bias', 'v.bias']) : [];
  const [q, k, v] = ['q', 'k', 'v'].map((part, i) => tape.gemm(h1, qkvWeights[i], qkvBiases[i], linear, `${part}_rows`));
  // Heads as [N, H, T, hd]: this transpose keeps the innermost axis, so it copies whole rows of hd floats (one that
  // moves the innermost axis, like k -> [N, H, hd, T], measured several times slower). Every product with a
  // transposed operand, here and in the backward pass, is a FusedMatMul with transpose flags, not a Transpose node.
  const heads = (rows: Var, name: string) => tape.transpose(tape.reshape(rows, [-1, T, H, hd]), [0, 2, 1, 3], name);
  const [qh, kh, vh] = [heads(q, 'q'), heads(k, 'k'), heads(v, 'v')];
  const scores = tape.matMul(qh, kh, 'scores', { transB: true, alpha: 1 / Math.sqrt(hd) });
  const attn = tape.softmax(scores, -1, 'attn');
  const context = tape.reshape(tape.transpose(tape.matMul(attn, vh, 'context'), [0, 2, 1, 3]), [-1, D], 'context_rows');
  const x1 = tape.add(x2, tape.gemm(context, w('attn.proj.weight'), w('attn.proj.bias'), linear, 'proj'), 'x1');
  const h2 = tape.layerNorm(x1, w('norm2.weight'), w('norm2.bias'), spec.layerNormEps, 'norm2');
  const hidden = tape.geluErf(tape.gemm(h2, w('mlp.fc1.weight'), w('mlp.fc1.bias'), linear, 'fc1'), 'gelu');
  const y = tape.add(x1, tape.gemm(hidden, w('mlp.fc2.weight'), w('mlp.fc2.bias'), linear, 'fc2'), 'y_rows');

  const diff = tape.sub(y, tape.reshape(target, [-1, D], 'target_rows'), 'diff');
  // The channel mean first: one float32 ReduceMean over millions of elements loses about 2.5e-4 of the loss.
  const perToken = tape.reduceMean(tape.mul(diff, diff, 'squared'), [1], false, STUDENT_TOKEN_DISCREPANCY);
  return { tape, x, target, weights, y, perToken };
}

/** The training graph and the names of its outputs. */
export interface StudentTrainingGraph {
  graph: OnnxGraph;
  /** Scalar output: the mean of (y - target)^2 over all N * tokens * width elements. */
  loss: string;
  /** Output name of each weight's gradient, by weight name. */
  gradients: Map<string, string>;
  /** Output name of d loss / d input, [N, tokens, width], when requested. */
  inputGradient?: string;
}

/**
 * Forward, MSE loss and backward of one student block in one graph: inputs `input`, `target` and every weight;
 * outputs the loss and every weight's gradient (and, with `inputGradient`, the input's).
 */
export function buildStudentTrainingGraph(spec: BlockSpec, options: { inputGradient?: boolean } = {}): StudentTrainingGraph {
  const graph = new OnnxGraph('student_block_training');
  const { tape, x, weights, perToken } = buildBlock(graph, spec, { weights: true, input: options.inputGradient ?? false });
  const loss = tape.reduceMean(perToken, [0], false, 'loss');
  const wrt = [...weights.values()];
  if (options.inputGradient) wrt.push(x);
  const grads = tape.backward(loss, wrt);
  graph.output(loss.name, 'float32', []);
  const gradients = new Map<string, string>();
  for (const [name, v] of weights) {
    const grad = grads.get(v.name)!;
    graph.output(grad, 'float32', v.shape);
    gradients.set(name, grad);
  }
  let inputGradient: string | undefined;
  if (options.inputGradient) {
    inputGradient = graph.op('Reshape', [grads.get(x.name)!, graph.int64s([-1, spec.tokens, spec.width], 'shape')], {}, { output: 'grad_input' });
    graph.output(inputGradient, 'float32', x.shape);
  }
  return { graph, loss: loss.name, gradients, inputGradient };
}

/**
 * The forward-only graph: outputs `per_token` [N * tokens] (per token, the mean over channels; the caller averages
 * each image's tokens) and `output` [N, tokens, width]. The mean over tokens is not a ReduceMean here: onnxruntime's
 * sums over a [N, tokens] axis depend in their last bit on where a row starts in memory, so an image's discrepancy
 * would depend on its position in the batch.
 */
export function buildStudentForwardGraph(spec: BlockSpec): OnnxGraph {
  const graph = new OnnxGraph('student_block_forward');
  const { y, perToken } = buildBlock(graph, spec, { weights: false, input: false });
  graph.output(perToken.name, 'float32', ['NT']);
  graph.op('Reshape', [y.name, graph.int64s([-1, spec.tokens, spec.width], 'shape')], {}, { output: 'output' });
  graph.output('output', 'float32', ['N', spec.tokens, spec.width]);
  return graph;
}
