#!/usr/bin/python3
"""Golden file for the int8 ViT (backbone-vit precision 'int8', test/backbone-vit-int8.test.ts).

Rerun from the repository root with Debian's Python (torch 1.13):

    /usr/bin/python3 scripts/golden/torch_vit_int8.py

It is deterministic and writes test/golden/vit/a/int8.safetensors: the features and hidden states of architecture a
(test/golden/vit/a, its timm checkpoint and reference pixels, as one batch) when every linear layer of the blocks is
onnxruntime's DynamicQuantizeMatMul as documented, computed here in float64 from the definitions:

- weights: torch's [out, in], quantized symmetrically per output channel: scale = max|w| / 127, q = round(w /
  scale), rounded half away from zero, clipped to [-127, 127]; the query's scale and bias then multiplied by
  head_dim ** -0.5 (the attention scale the graph folds in);
- activations: ONNX DynamicQuantizeLinear over the whole [N * tokens, in] input: lo = min(0, min x), hi =
  max(0, max x), scale = (hi - lo) / 255, zero point = round(-lo / scale), q = clip(round(x / scale) + zero point,
  0, 255), rounding half to even;
- y = (q_x - zero point) @ q_w^T * scale_x * scale_w + bias.

The patch embedding, attention products, softmax, LayerNorms and GELU stay exact.
"""
import json
import os
import struct

import numpy as np
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'test', 'golden', 'vit', 'a')


def read_safetensors(path):
    with open(path, 'rb') as f:
        size = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(size))
        blob = f.read()
    out, meta = {}, header.pop('__metadata__', {})
    for name, entry in header.items():
        start, end = entry['data_offsets']
        raw = np.frombuffer(blob[start:end], dtype={'F32': np.float32, 'BF16': np.uint16}[entry['dtype']])
        if entry['dtype'] == 'BF16':
            raw = (raw.astype(np.uint32) << 16).view(np.float32)
        out[name] = torch.from_numpy(raw.astype(np.float64).reshape(entry['shape']))
    return out, meta


def quantized_linear(x, w, b, factor=1.0):
    scale_w = w.abs().amax(dim=1) / 127
    scale_w = torch.where(scale_w > 0, scale_w, torch.ones_like(scale_w))
    v = w / scale_w[:, None]
    q_w = torch.clamp(torch.sign(v) * torch.floor(v.abs() + 0.5), -127, 127)
    scale_w = scale_w * factor
    if b is not None:
        b = b * factor
    lo, hi = min(0.0, x.min().item()), max(0.0, x.max().item())
    scale_x = (hi - lo) / 255
    zero = float(np.clip(np.round(-lo / scale_x), 0, 255))
    q_x = torch.clamp(torch.round(x / scale_x) + zero, 0, 255)
    y = ((q_x - zero) @ q_w.T) * scale_x * scale_w[None, :]
    return y if b is None else y + b


def main():
    w, _ = read_safetensors(os.path.join(ROOT, 'timm', 'model.safetensors'))
    ref, meta = read_safetensors(os.path.join(ROOT, 'reference.safetensors'))
    d, heads, depth, p, eps = int(meta['width']), int(meta['heads']), int(meta['depth']), int(meta['patch_size']), float(meta['eps'])
    hd = d // heads
    pixels = ref['pixels']
    n = pixels.shape[0]
    x = torch.nn.functional.conv2d(pixels, w['patch_embed.proj.weight'], w['patch_embed.proj.bias'], stride=p).flatten(2).transpose(1, 2)
    x = torch.cat([w['cls_token'].expand(n, -1, -1), x], dim=1) + w['pos_embed']
    t = x.shape[1]
    out = {'hidden_0': x}
    ln = lambda v, name: torch.nn.functional.layer_norm(v, (d,), w[f'{name}.weight'], w[f'{name}.bias'], eps)
    for i in range(depth):
        pre = f'blocks.{i}.'
        rows = x.reshape(-1, d)
        h = ln(rows, pre + 'norm1')
        qkv_w, qkv_b = w[pre + 'attn.qkv.weight'], w[pre + 'attn.qkv.bias']
        q = quantized_linear(h, qkv_w[:d], qkv_b[:d], hd ** -0.5)
        k = quantized_linear(h, qkv_w[d:2 * d], qkv_b[d:2 * d])
        v = quantized_linear(h, qkv_w[2 * d:], qkv_b[2 * d:])
        split = lambda m: m.reshape(n, t, heads, hd).transpose(1, 2)
        a = torch.softmax(split(q) @ split(k).transpose(-2, -1), dim=-1)
        context = (a @ split(v)).transpose(1, 2).reshape(-1, d)
        rows = rows + quantized_linear(context, w[pre + 'attn.proj.weight'], w[pre + 'attn.proj.bias'])
        hidden = torch.nn.functional.gelu(quantized_linear(ln(rows, pre + 'norm2'), w[pre + 'mlp.fc1.weight'], w[pre + 'mlp.fc1.bias']))
        rows = rows + quantized_linear(hidden, w[pre + 'mlp.fc2.weight'], w[pre + 'mlp.fc2.bias'])
        x = rows.reshape(n, t, d)
        out[f'hidden_{i + 1}'] = x
    out['features'] = ln(x[:, 0], 'norm')
    tensors = {k: v.to(torch.float32).numpy() for k, v in out.items()}
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        data = np.ascontiguousarray(tensors[name]).tobytes()
        header[name] = {'dtype': 'F32', 'shape': list(tensors[name].shape), 'data_offsets': [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    encoded = json.dumps(header).encode()
    encoded += b' ' * (-len(encoded) % 8)
    with open(os.path.join(ROOT, 'int8.safetensors'), 'wb') as f:
        f.write(struct.pack('<Q', len(encoded)) + encoded + b''.join(blobs))
    print('wrote', os.path.join(ROOT, 'int8.safetensors'))


main()
