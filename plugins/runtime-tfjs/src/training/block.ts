// The student block (timm's pre-norm ViT block) in tfjs ops, differentiated by tfjs's autodiff. The layers whose
// built-in gradients are slow or memory-hungry have their own: linear layers and batched products get theirs without
// matMul transpose flags (which send tfjs-wasm to a kernel about 13x slower than an explicit transpose and a plain
// product), LayerNorm and GELU keep only what their backward pass needs instead of every intermediate.
import * as tf from '@tensorflow/tfjs-core';
import { checkBlockSpec, type BlockSpec } from '@transformaly/core';

export type Params = ReadonlyMap<string, tf.Tensor>;

/** Throws a message naming the field unless the spec describes a buildable block. */

/**
 * One differentiable layer. tfjs's autodiff (variables, the tape, variableGrads) chains these, each with its own
 * backward rule: tfjs-core's Node build registers no gradients of its own (those ship only inside the
 * @tensorflow/tfjs bundle), and the rules here are the fast ones on wasm.
 */
function layer(
  forward: (inputs: tf.Tensor[], save: tf.GradSaveFunc) => tf.Tensor,
  backward: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor[],
): (...inputs: tf.Tensor[]) => tf.Tensor {
  const f = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const inputs = args.slice(0, -1) as tf.Tensor[];
    return {
      value: forward(inputs, save),
      // Temporaries of a backward rule are freed at once; tfjs would keep them until the whole pass ends.
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.tidy(() => backward(dy, saved)),
    };
  });
  return (...inputs) => f(...inputs);
}

const zeroPads = (rank: number): Array<[number, number]> => Array.from({ length: rank }, (): [number, number] => [0, 0]);

/** dW of y = x W^T for W [out, in]: one explicit transpose of the narrower operand, then plain products. */
function weightGradient(dy: tf.Tensor2D, x: tf.Tensor2D, out: number, inner: number): tf.Tensor2D {
  if (out <= inner) return tf.matMul(tf.transpose(dy), x);
  return tf.transpose(tf.matMul(tf.transpose(x), dy)) as tf.Tensor2D;
}

/** y = x W^T + b, torch's Linear, with W in its [out, in] layout. */
const linearWithBias = layer(
  ([x, w, b], save) => {
    save([x, w]);
    return tf.fused.matMul({ a: x as tf.Tensor2D, b: tf.transpose(w as tf.Tensor2D), bias: b });
  },
  (dy, [x, w]) => {
    const g = dy as tf.Tensor2D;
    return [tf.matMul(g, w as tf.Tensor2D), weightGradient(g, x as tf.Tensor2D, w.shape[0] as number, w.shape[1] as number), tf.sum(g, 0)];
  },
);

const linearNoBias = layer(
  ([x, w], save) => {
    save([x, w]);
    return tf.matMul(x as tf.Tensor2D, tf.transpose(w as tf.Tensor2D));
  },
  (dy, [x, w]) => {
    const g = dy as tf.Tensor2D;
    return [tf.matMul(g, w as tf.Tensor2D), weightGradient(g, x as tf.Tensor2D, w.shape[0] as number, w.shape[1] as number)];
  },
);

function linear(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor | undefined): tf.Tensor {
  return b === undefined ? linearNoBias(x, w) : linearWithBias(x, w, b);
}

/** Part `k` of 3 along the first axis (the q, k or v rows of the qkv weight or bias); the gradient pads it back. */
function qkvPart(k: number) {
  return layer(
    ([w]) => {
      const rows = w.shape[0] / 3;
      return tf.slice(w, [k * rows, ...w.shape.slice(1).map(() => 0)], [rows, ...w.shape.slice(1)]);
    },
    (dy) => {
      const rows = dy.shape[0];
      return [tf.pad(dy, [[k * rows, (2 - k) * rows], ...zeroPads(dy.rank - 1)])];
    },
  );
}
const QKV = [qkvPart(0), qkvPart(1), qkvPart(2)];

const swapLast = (t: tf.Tensor) => tf.transpose(t, [0, 1, 3, 2]);

/** scale * (a @ b) over [N, H, ., .] operands; the backward products take explicitly transposed copies. */
function batchMatMul(scale: number) {
  return layer(
    ([a, b], save) => {
      save([a, b]);
      const product = tf.matMul(a as tf.Tensor4D, b as tf.Tensor4D);
      return scale === 1 ? product : tf.mul(product, scale);
    },
    (dy, [a, b]) => {
      const g = (scale === 1 ? dy : tf.mul(dy, scale)) as tf.Tensor4D;
      return [tf.matMul(g, swapLast(b) as tf.Tensor4D), tf.matMul(swapLast(a) as tf.Tensor4D, g)];
    },
  );
}

/** Softmax over the last axis. */
const softmax = layer(
  ([x], save) => {
    const y = tf.softmax(x);
    save([y]);
    return y;
  },
  (dy, [y]) => [tf.mul(y, tf.sub(dy, tf.sum(tf.mul(dy, y), -1, true)))],
);

/** A permutation of axes (a reshape folded in before it); the gradient undoes both. */
function reshapeTranspose(shape: number[], perm: number[], back: number[]) {
  const inverse = perm.map((_, i) => perm.indexOf(i));
  return layer(
    ([x]) => tf.transpose(tf.reshape(x, shape), perm),
    (dy) => [tf.reshape(tf.transpose(dy, inverse), back)],
  );
}

/** a + b of equal shapes (the residual connections). */
const residual = layer(
  ([a, b]) => tf.add(a, b),
  (dy) => [dy, dy],
);

/**
 * `weight` x the mean of (y - target)^2 over all rows and channels, as a mean of per-row channel means (one float32
 * mean over millions of elements drifts). The gradient of `target` is never used, only returned.
 */
function meanSquaredError(weight: number) {
  return layer(
    ([y, target], save) => {
      const diff = tf.sub(y, target);
      save([diff]);
      const loss = tf.mean(tf.mean(tf.square(diff), -1));
      return weight === 1 ? loss : tf.mul(loss, weight);
    },
    (dy, [diff]) => {
      const g = tf.mul(diff, tf.mul(dy, (2 * weight) / diff.size));
      return [g, tf.neg(g)];
    },
  );
}

/** Exact (erf) GELU: 0.5 a (1 + erf(a / sqrt 2)); keeps `a` and the normal CDF for its backward pass. */
const gelu = layer(
  ([a], save) => {
    const cdf = tf.mul(tf.add(tf.erf(tf.mul(a, Math.SQRT1_2)), 1), 0.5);
    save([a, cdf]);
    return tf.mul(a, cdf);
  },
  (dy, [a, cdf]) => {
    const pdf = tf.mul(tf.exp(tf.mul(tf.square(a), -0.5)), 1 / Math.sqrt(2 * Math.PI));
    return [tf.mul(dy, tf.add(cdf, tf.mul(a, pdf)))];
  },
);

/** LayerNorm over the last axis of [rows, D]; keeps the normalised rows and 1/std for its backward pass. */
function layerNorm(eps: number) {
  return layer(
    ([x, gamma, beta], save) => {
      const centered = tf.sub(x, tf.mean(x, -1, true));
      const invStd = tf.rsqrt(tf.add(tf.mean(tf.square(centered), -1, true), eps));
      const normalised = tf.mul(centered, invStd);
      save([normalised, invStd, gamma]);
      return tf.add(tf.mul(normalised, gamma), beta);
    },
    (dy, [xhat, invStd, gamma]) => {
      const dxhat = tf.mul(dy, gamma);
      const dx = tf.mul(invStd, tf.sub(tf.sub(dxhat, tf.mean(dxhat, -1, true)), tf.mul(xhat, tf.mean(tf.mul(dxhat, xhat), -1, true))));
      return [dx, tf.sum(tf.mul(dy, xhat), 0), tf.sum(dy, 0)];
    },
  );
}

export interface StudentBlock {
  /** Student output rows [n * tokens, width] for input rows `x`. */
  output(params: Params, x: tf.Tensor2D): tf.Tensor2D;
  /** `weight` x the mean squared difference to `target` over all rows and channels: the differentiable loss. */
  loss(params: Params, x: tf.Tensor2D, target: tf.Tensor2D, weight: number): tf.Scalar;
}

/** The student block as a function of its weights; inputs and targets are [n * tokens, width] rows. */
export function studentBlock(spec: BlockSpec): StudentBlock {
  checkBlockSpec(spec);
  const { width: d, heads: h, tokens: t } = spec;
  const hd = d / h;
  const norm = layerNorm(spec.layerNormEps);
  // [n, H, T, hd] views for queries and values, [n, H, hd, T] for keys: the products then need no transpose flags.
  const rowsToHeads = reshapeTranspose([-1, t, h, hd], [0, 2, 1, 3], [-1, d]);
  const rowsToKeys = reshapeTranspose([-1, t, h, hd], [0, 2, 3, 1], [-1, d]);
  const headsToRows = layer(
    ([context]) => tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [-1, d]),
    (dy) => [tf.transpose(tf.reshape(dy, [-1, t, h, hd]), [0, 2, 1, 3])],
  );
  const scores = batchMatMul(1 / Math.sqrt(hd));
  const weighted = batchMatMul(1);
  const output = (params: Params, x: tf.Tensor2D): tf.Tensor2D => {
    const w = (name: string) => params.get(name)!;
    const h1 = norm(x, w('norm1.weight'), w('norm1.bias'));
    // q, k and v from row blocks of the qkv weight: slicing the weight copies D x D values, slicing a [rows, 3D]
    // output would copy rows x D.
    const qkvW = w('attn.qkv.weight');
    const qkvB = spec.qkvBias ? w('attn.qkv.bias') : undefined;
    const [q, k, v] = QKV.map((part) => linear(h1, part(qkvW), qkvB === undefined ? undefined : part(qkvB)));
    const probs = softmax(scores(rowsToHeads(q), rowsToKeys(k)));
    const context = headsToRows(weighted(probs, rowsToHeads(v)));
    const x1 = residual(x, linear(context, w('attn.proj.weight'), w('attn.proj.bias')));
    const hidden = gelu(linear(norm(x1, w('norm2.weight'), w('norm2.bias')), w('mlp.fc1.weight'), w('mlp.fc1.bias')));
    return residual(x1, linear(hidden, w('mlp.fc2.weight'), w('mlp.fc2.bias'))) as tf.Tensor2D;
  };
  return {
    output,
    loss: (params, x, target, weight) => meanSquaredError(weight)(output(params, x), target) as tf.Scalar,
  };
}
