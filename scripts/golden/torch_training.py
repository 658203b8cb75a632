#!/usr/bin/python3
"""Golden files for the onnxruntime training engine (test/training-ops.test.ts, test/training-onnx.test.ts).

Rerun from the repository root with Debian's Python (torch 1.13), not the `python3` on PATH:

    /usr/bin/python3 scripts/golden/torch_training.py

It is deterministic (fixed seeds) and rewrites test/golden/training/. Everything is computed by torch autograd in
float64, from inputs that are exactly representable in float32 (they are rounded first), so the float32 engine under
test and this reference start from identical numbers. Files (safetensors, float64; the `cases` metadata is JSON):

    ops.safetensors         one small case per gradient rule: <case>/<input>, <case>/dy (dy0, dy1, ... for several
                            outputs), <case>/y (y0, ...), <case>/grad/<input>; metadata `cases` lists each case's op,
                            inputs and attributes.
    block_<name>.safetensors  a whole student block (timm's pre-norm ViT block): input, target, weight/<timm name>,
                            output, loss, discrepancy (per image), grad/<timm name>, grad/input; metadata `spec`.
    adam_<name>.safetensors   torch.optim.Adam on that block, per learning rate: batch<i>/input, batch<i>/target,
                            run<k>/loss<i> (before step i), run<k>/step<i>/<timm name> (weights after step i);
                            metadata `spec`, `adam` (betas, and lr and eps of each run), `steps`.
    adam_update.safetensors   torch.optim.Adam (float32) on one parameter with given gradients: param, grad<i>,
                            after<i>; metadata `adam`, `steps`.
"""
import json
import os
import struct

import torch
import torch.nn.functional as F

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'test', 'golden', 'training')


def write_safetensors(path, tensors, metadata=None):
    """The safetensors format by hand (the Python package is not installed here): u64 header length, JSON, data."""
    header, chunks, offset = {}, [], 0
    if metadata:
        header['__metadata__'] = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        dtype = {torch.float64: 'F64', torch.float32: 'F32'}[t.dtype]
        data = t.numpy().tobytes()
        header[name] = {'dtype': dtype, 'shape': list(t.shape), 'data_offsets': [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(',', ':'))
    text += ' ' * ((8 - (8 + len(text)) % 8) % 8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(text)))
        f.write(text.encode('utf8'))
        for c in chunks:
            f.write(c)


def f32(t):
    """float64 holding exactly float32-representable values."""
    return t.float().double()


def randn(gen, *shape, scale=1.0, shift=0.0):
    return f32(torch.randn(*shape, generator=gen, dtype=torch.float64) * scale + shift)


# ---------------------------------------------------------------------------------------------------------------------
# (a) one case per gradient rule
# ---------------------------------------------------------------------------------------------------------------------

def gelu_inputs(gen):
    x = randn(gen, 4, 9, scale=2.5)
    # Large magnitudes too: exp(s^2) overflows float32 there and the rule must still give 0 / 1.
    x[0, :6] = torch.tensor([-20.0, -9.0, -3.0, 3.0, 9.0, 20.0], dtype=torch.float64)
    return {'x': x}


def op_cases(gen):
    """(name, op, attrs, inputs dict, forward function of the inputs returning one tensor or a list)."""
    cases = []

    def case(name, op, attrs, inputs, fn):
        cases.append((name, op, attrs, inputs, fn))

    case('matmul_batched', 'MatMul', {}, {'a': randn(gen, 2, 3, 4, 5), 'b': randn(gen, 2, 3, 5, 6)}, lambda a, b: a @ b)
    case('matmul_broadcast', 'MatMul', {}, {'a': randn(gen, 2, 3, 4, 5), 'b': randn(gen, 5, 6)}, lambda a, b: a @ b)
    case('matmul_transB_alpha', 'MatMul', {'transB': 1, 'alpha': 0.125}, {'a': randn(gen, 2, 3, 4, 5), 'b': randn(gen, 2, 3, 6, 5)},
         lambda a, b: 0.125 * (a @ b.transpose(-1, -2)))
    case('matmul_transA', 'MatMul', {'transA': 1}, {'a': randn(gen, 2, 5, 4), 'b': randn(gen, 2, 5, 6)},
         lambda a, b: a.transpose(-1, -2) @ b)
    case('matmul_transAB_broadcast', 'MatMul', {'transA': 1, 'transB': 1, 'alpha': 2.0},
         {'a': randn(gen, 2, 3, 5, 4), 'b': randn(gen, 6, 5)}, lambda a, b: 2.0 * (a.transpose(-1, -2) @ b.T))
    case('gemm_transB_bias', 'Gemm', {'transB': 1}, {'a': randn(gen, 7, 5), 'b': randn(gen, 6, 5), 'c': randn(gen, 6)},
         lambda a, b, c: a @ b.T + c)
    case('gemm_transA_alpha_beta', 'Gemm', {'transA': 1, 'alpha': 0.5, 'beta': 2.0},
         {'a': randn(gen, 5, 7), 'b': randn(gen, 5, 6), 'c': randn(gen, 7, 1)}, lambda a, b, c: 0.5 * (a.T @ b) + 2.0 * c)
    case('gemm_transAB', 'Gemm', {'transA': 1, 'transB': 1}, {'a': randn(gen, 5, 7), 'b': randn(gen, 6, 5)},
         lambda a, b: a.T @ b.T)
    case('gemm_plain_matrix_bias', 'Gemm', {}, {'a': randn(gen, 7, 5), 'b': randn(gen, 5, 6), 'c': randn(gen, 7, 6)},
         lambda a, b, c: a @ b + c)
    case('add_broadcast', 'Add', {}, {'a': randn(gen, 2, 3, 4), 'b': randn(gen, 3, 1)}, lambda a, b: a + b)
    case('sub_broadcast', 'Sub', {}, {'a': randn(gen, 4), 'b': randn(gen, 2, 3, 4)}, lambda a, b: a - b)
    case('mul_broadcast', 'Mul', {}, {'a': randn(gen, 2, 3, 4), 'b': randn(gen, 1, 3, 1)}, lambda a, b: a * b)
    case('mul_square', 'Square', {}, {'a': randn(gen, 3, 5)}, lambda a: a * a)
    case('layernorm', 'LayerNormalization', {'epsilon': 1e-5},
         {'x': randn(gen, 2, 5, 8, scale=2.0, shift=0.7), 'scale': randn(gen, 8, scale=0.3, shift=1.0), 'bias': randn(gen, 8)},
         lambda x, scale, bias: F.layer_norm(x, (8,), scale, bias, 1e-5))
    case('softmax_last', 'Softmax', {'axis': -1}, {'x': randn(gen, 2, 3, 7, scale=2.0)}, lambda x: torch.softmax(x, -1))
    case('softmax_middle', 'Softmax', {'axis': 1}, {'x': randn(gen, 2, 5, 3, scale=2.0)}, lambda x: torch.softmax(x, 1))
    case('gelu_erf', 'GeluErf', {}, gelu_inputs(gen), lambda x: F.gelu(x))
    case('reshape', 'Reshape', {'shape': [-1, 4]}, {'x': randn(gen, 2, 3, 4)}, lambda x: x.reshape(-1, 4))
    case('transpose', 'Transpose', {'perm': [0, 2, 3, 1]}, {'x': randn(gen, 2, 3, 4, 5)}, lambda x: x.permute(0, 2, 3, 1))
    case('reducemean_last_keep', 'ReduceMean', {'axes': [-1], 'keepdims': 1}, {'x': randn(gen, 3, 4, 5)},
         lambda x: x.mean(dim=-1, keepdim=True))
    case('reducemean_outer_drop', 'ReduceMean', {'axes': [0, 2], 'keepdims': 0}, {'x': randn(gen, 3, 4, 5)},
         lambda x: x.mean(dim=(0, 2)))
    case('split', 'Split', {'axis': 1, 'split': [2, 3, 4]}, {'x': randn(gen, 4, 9)},
         lambda x: list(torch.split(x, [2, 3, 4], dim=1)))
    return cases


def write_ops():
    gen = torch.Generator().manual_seed(101)
    tensors, meta = {}, []
    for name, op, attrs, inputs, fn in op_cases(gen):
        leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
        out = fn(*leaves.values())
        outs = out if isinstance(out, list) else [out]
        dys = [randn(gen, *o.shape) for o in outs]
        torch.autograd.backward(outs, dys)
        for k, v in inputs.items():
            tensors[f'{name}/{k}'] = v
            tensors[f'{name}/grad/{k}'] = leaves[k].grad
        if isinstance(out, list):
            for i, (o, dy) in enumerate(zip(outs, dys)):
                tensors[f'{name}/y{i}'] = o
                tensors[f'{name}/dy{i}'] = dy
        else:
            tensors[f'{name}/y'] = out
            tensors[f'{name}/dy'] = dys[0]
        meta.append({'name': name, 'op': op, 'inputs': list(inputs), 'attrs': attrs, 'outputs': len(outs)})
    write_safetensors(os.path.join(ROOT, 'ops.safetensors'), tensors, {'cases': meta})


# ---------------------------------------------------------------------------------------------------------------------
# (b) the student block, (c) Adam on it
# ---------------------------------------------------------------------------------------------------------------------

BLOCKS = [
    dict(name='a', seed=7, width=32, heads=4, mlpDim=64, tokens=17, batch=3, layerNormEps=1e-6, qkvBias=True),
    dict(name='b', seed=8, width=32, heads=4, mlpDim=64, tokens=17, batch=3, layerNormEps=1e-12, qkvBias=False),
]
# The paper's settings, and a large step so that updates dominate the weights' rounding. Adam divides by
# sqrt(v) + eps, so a gradient element near float32 noise (they occur: one of block a's is 6e-7 of its tensor's largest)
# makes the update ill-conditioned when eps is tiny against that noise; the large-step run uses eps 1e-6 to stay
# comparable element by element.
ADAM = dict(runs=[dict(lr=1e-4, eps=1e-8), dict(lr=1e-2, eps=1e-6)], beta1=0.9, beta2=0.999)
ADAM_STEPS = 3


def weight_shapes(spec):
    d, m = spec['width'], spec['mlpDim']
    shapes = {'norm1.weight': (d,), 'norm1.bias': (d,), 'attn.qkv.weight': (3 * d, d)}
    if spec['qkvBias']:
        shapes['attn.qkv.bias'] = (3 * d,)
    shapes.update({'attn.proj.weight': (d, d), 'attn.proj.bias': (d,), 'norm2.weight': (d,), 'norm2.bias': (d,),
                   'mlp.fc1.weight': (m, d), 'mlp.fc1.bias': (m,), 'mlp.fc2.weight': (d, m), 'mlp.fc2.bias': (d,)})
    return shapes


def random_weights(spec, gen):
    """Every parameter away from its trivial value (LayerNorm affines included), so that a miswired tensor shows."""
    weights = {}
    for name, shape in weight_shapes(spec).items():
        if name.startswith('norm') and name.endswith('weight'):
            weights[name] = randn(gen, *shape, scale=0.2, shift=1.0)
        elif name.endswith('bias'):
            weights[name] = randn(gen, *shape, scale=0.1)
        else:
            weights[name] = randn(gen, *shape, scale=shape[1] ** -0.5)
    return weights


def block_forward(spec, w, x):
    """timm's pre-norm ViT block."""
    n, t, d = x.shape
    h = spec['heads']
    hd = d // h
    eps = spec['layerNormEps']
    y = F.layer_norm(x, (d,), w['norm1.weight'], w['norm1.bias'], eps)
    qkv = F.linear(y, w['attn.qkv.weight'], w.get('attn.qkv.bias')).reshape(n, t, 3, h, hd).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    attn = ((q @ k.transpose(-2, -1)) * hd ** -0.5).softmax(dim=-1)
    x = x + F.linear((attn @ v).transpose(1, 2).reshape(n, t, d), w['attn.proj.weight'], w['attn.proj.bias'])
    y = F.layer_norm(x, (d,), w['norm2.weight'], w['norm2.bias'], eps)
    y = F.linear(F.gelu(F.linear(y, w['mlp.fc1.weight'], w['mlp.fc1.bias'])), w['mlp.fc2.weight'], w['mlp.fc2.bias'])
    return x + y


def spec_meta(spec):
    return {k: spec[k] for k in ('width', 'heads', 'mlpDim', 'tokens', 'layerNormEps', 'qkvBias')}


def batch(spec, gen, n):
    shape = (n, spec['tokens'], spec['width'])
    return randn(gen, *shape, scale=1.5, shift=0.2), randn(gen, *shape)


def write_block(spec):
    gen = torch.Generator().manual_seed(spec['seed'])
    weights = random_weights(spec, gen)
    x, target = batch(spec, gen, spec['batch'])
    leaves = {k: v.clone().requires_grad_(True) for k, v in weights.items()}
    xl = x.clone().requires_grad_(True)
    out = block_forward(spec, leaves, xl)
    loss = F.mse_loss(out, target)
    loss.backward()
    tensors = {'input': x, 'target': target, 'output': out, 'loss': loss.reshape(1),
               'discrepancy': ((out - target) ** 2).mean(dim=(1, 2)), 'grad/input': xl.grad}
    for k in weights:
        tensors[f'weight/{k}'] = weights[k]
        tensors[f'grad/{k}'] = leaves[k].grad
    write_safetensors(os.path.join(ROOT, f"block_{spec['name']}.safetensors"), tensors, {'spec': spec_meta(spec)})

    # Adam: the same starting weights, a different batch per step (the last one smaller, as an epoch's last batch).
    sizes = [spec['batch']] * (ADAM_STEPS - 1) + [spec['batch'] - 1]
    batches = [batch(spec, gen, n) for n in sizes]
    tensors = {}
    for i, (bx, bt) in enumerate(batches):
        tensors[f'batch{i}/input'] = bx
        tensors[f'batch{i}/target'] = bt
    for li, run in enumerate(ADAM['runs']):
        params = [weights[k].clone().requires_grad_(True) for k in weights]
        named = dict(zip(weights, params))
        opt = torch.optim.Adam(params, lr=run['lr'], betas=(ADAM['beta1'], ADAM['beta2']), eps=run['eps'])
        for i, (bx, bt) in enumerate(batches):
            opt.zero_grad()
            loss = F.mse_loss(block_forward(spec, named, bx), bt)
            loss.backward()
            opt.step()
            tensors[f'run{li}/loss{i}'] = loss.detach().reshape(1)
            for k, p in named.items():
                tensors[f'run{li}/step{i + 1}/{k}'] = p.detach().clone()
    for k in weights:
        tensors[f'weight/{k}'] = weights[k]
    write_safetensors(os.path.join(ROOT, f"adam_{spec['name']}.safetensors"), tensors,
                      {'spec': spec_meta(spec), 'adam': ADAM, 'steps': ADAM_STEPS})


def write_adam_update():
    """torch.optim.Adam in float32 on one tensor, with gradients of very different sizes (and exact zeros)."""
    gen = torch.Generator().manual_seed(5)
    settings = dict(lr=1e-3, beta1=0.8, beta2=0.99, eps=1e-6)
    param = torch.randn(1000, generator=gen, dtype=torch.float32).requires_grad_(True)
    tensors = {'param': param.detach().clone()}
    opt = torch.optim.Adam([param], lr=settings['lr'], betas=(settings['beta1'], settings['beta2']), eps=settings['eps'])
    steps = 4
    for i in range(steps):
        grad = torch.randn(1000, generator=gen, dtype=torch.float32) * torch.logspace(-9, 2, 1000, dtype=torch.float32)
        grad[::97] = 0
        param.grad = grad.clone()
        opt.step()
        tensors[f'grad{i}'] = grad
        tensors[f'after{i}'] = param.detach().clone()
    write_safetensors(os.path.join(ROOT, 'adam_update.safetensors'), tensors, {'adam': settings, 'steps': steps})


def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    write_ops()
    for spec in BLOCKS:
        write_block(spec)
    write_adam_update()


if __name__ == '__main__':
    main()
