#!/usr/bin/python3
"""Golden files for the ViT backbone's parity tests (test/backbone-vit-parity.test.ts).

Rerun from the repository root with Debian's Python (torch 1.13, torchvision 0.14), not the `python3` on PATH:

    /usr/bin/python3 scripts/golden/torch_vit.py

It is deterministic (fixed seeds) and rewrites test/golden/vit/. For each architecture it builds a torchvision
`VisionTransformer` with random weights (every parameter, biases and LayerNorm affines included, so that a miswired
tensor shows), rounds them to the half-precision type one of its checkpoints is stored in, and writes:

    <arch>/hf/     config.json, preprocessor_config.json, model.safetensors   (Hugging Face transformers layout)
    <arch>/timm/   [config.json,] model.safetensors                           (timm layout)
    <arch>/reference.safetensors   pixels [N,3,H,W]; features [N,D] (final-LayerNorm CLS); hidden_0..hidden_depth
                                   [N,T,D] (hidden_0 = input of block 0, hidden_{i+1} = output of block i)
    a/resampled.safetensors        the same for architecture a run at 40x48 pixels, its position embeddings resampled
                                   with torch's bicubic interpolate (align_corners=False), as transformers and timm do

The reference runs in float64 on the rounded weights, so the float32, float16 and bfloat16 files all describe exactly
the model that produced it.
"""
import json
import os
import struct
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.vision_transformer import VisionTransformer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'test', 'golden', 'vit')

ARCHS = [
    dict(
        name='a', seed=11, image_size=32, patch_size=8, width=48, depth=3, heads=4, mlp=96, eps=1e-6, qkv_bias=True,
        images=3,
        # Hugging Face ViTForImageClassification (keys under `vit.`, a classifier head), float32.
        hf=dict(dtype='F32', prefix='vit.', classifier=True, pooler=False,
                preprocessor={'do_normalize': True, 'do_resize': True, 'do_rescale': True, 'rescale_factor': 1 / 255,
                              'image_mean': [0.485, 0.456, 0.406], 'image_std': [0.229, 0.224, 0.225],
                              'resample': 2, 'size': {'height': 32, 'width': 32},
                              'image_processor_type': 'ViTImageProcessor'}),
        # timm with a hub config (heads from model_args, which wins over the name's "tiny" = 3 heads), bfloat16.
        timm=dict(dtype='BF16', config={
            'architecture': 'vit_tiny_patch8_32', 'num_classes': 5, 'num_features': 48, 'global_pool': 'token',
            'model_args': {'num_heads': 4, 'embed_dim': 48, 'depth': 3, 'patch_size': 8, 'img_size': 32},
            'pretrained_cfg': {'tag': 'golden', 'input_size': [3, 32, 32], 'interpolation': 'bicubic',
                               'mean': [0.5, 0.5, 0.5], 'std': [0.5, 0.5, 0.5], 'crop_pct': 1.0,
                               'num_classes': 5}}),
        round=torch.bfloat16,
    ),
    dict(
        name='b', seed=23, image_size=24, patch_size=4, width=64, depth=2, heads=2, mlp=160, eps=1e-12, qkv_bias=False,
        images=2,
        # Hugging Face ViTModel (no prefix, with the pooler), float16, legacy integer `size`, bicubic.
        hf=dict(dtype='F16', prefix='', classifier=False, pooler=True,
                preprocessor={'do_normalize': True, 'do_resize': True, 'image_mean': [0.5, 0.5, 0.5],
                              'image_std': [0.5, 0.5, 0.5], 'resample': 3, 'size': 24,
                              'feature_extractor_type': 'ViTFeatureExtractor'}),
        # timm without any config: the test passes heads and eps as options.
        timm=dict(dtype='F32', config=None),
        round=torch.float16,
    ),
]


def randomize(model, arch, gen):
    d = arch['width']
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith('in_proj_bias') and not arch['qkv_bias']:
                p.zero_()
            elif '.ln' in name or name.startswith('encoder.ln'):
                p.copy_((1.0 if name.endswith('weight') else 0.0) + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith('bias'):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif name == 'class_token':
                p.copy_(torch.randn(p.shape, generator=gen))
            elif name == 'encoder.pos_embedding':
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in ** 0.5)
            p.copy_(p.to(arch['round']).to(torch.float32))
    assert model.class_token.shape[-1] == d


def blocks(sd, depth):
    for i in range(depth):
        yield i, {k[len(f'encoder.layers.encoder_layer_{i}.'):]: v for k, v in sd.items()
                  if k.startswith(f'encoder.layers.encoder_layer_{i}.')}


def to_hf(sd, arch):
    d, cfg = arch['width'], arch['hf']
    p = cfg['prefix']
    out = {
        p + 'embeddings.cls_token': sd['class_token'],
        p + 'embeddings.position_embeddings': sd['encoder.pos_embedding'],
        p + 'embeddings.patch_embeddings.projection.weight': sd['conv_proj.weight'],
        p + 'embeddings.patch_embeddings.projection.bias': sd['conv_proj.bias'],
        p + 'layernorm.weight': sd['encoder.ln.weight'],
        p + 'layernorm.bias': sd['encoder.ln.bias'],
    }
    for i, b in blocks(sd, arch['depth']):
        q = f'{p}encoder.layer.{i}.'
        w, bias = b['self_attention.in_proj_weight'], b['self_attention.in_proj_bias']
        for j, part in enumerate(['query', 'key', 'value']):
            out[q + f'attention.attention.{part}.weight'] = w[j * d:(j + 1) * d]
            if arch['qkv_bias']:
                out[q + f'attention.attention.{part}.bias'] = bias[j * d:(j + 1) * d]
        out[q + 'attention.output.dense.weight'] = b['self_attention.out_proj.weight']
        out[q + 'attention.output.dense.bias'] = b['self_attention.out_proj.bias']
        out[q + 'layernorm_before.weight'] = b['ln_1.weight']
        out[q + 'layernorm_before.bias'] = b['ln_1.bias']
        out[q + 'layernorm_after.weight'] = b['ln_2.weight']
        out[q + 'layernorm_after.bias'] = b['ln_2.bias']
        out[q + 'intermediate.dense.weight'] = b['mlp.0.weight']
        out[q + 'intermediate.dense.bias'] = b['mlp.0.bias']
        out[q + 'output.dense.weight'] = b['mlp.3.weight']
        out[q + 'output.dense.bias'] = b['mlp.3.bias']
    if cfg['classifier']:
        out['classifier.weight'] = sd['heads.head.weight']
        out['classifier.bias'] = sd['heads.head.bias']
    if cfg['pooler']:
        gen = torch.Generator().manual_seed(5)
        out['pooler.dense.weight'] = torch.randn(d, d, generator=gen)
        out['pooler.dense.bias'] = torch.randn(d, generator=gen)
    config = {
        'architectures': ['ViTForImageClassification' if cfg['classifier'] else 'ViTModel'],
        'model_type': 'vit',
        'hidden_size': d,
        'num_hidden_layers': arch['depth'],
        'num_attention_heads': arch['heads'],
        'intermediate_size': arch['mlp'],
        'hidden_act': 'gelu',
        'hidden_dropout_prob': 0.0,
        'attention_probs_dropout_prob': 0.0,
        'initializer_range': 0.02,
        'layer_norm_eps': arch['eps'],
        'image_size': arch['image_size'],
        'patch_size': arch['patch_size'],
        'num_channels': 3,
        'qkv_bias': arch['qkv_bias'],
        'encoder_stride': arch['patch_size'],
        'torch_dtype': 'float32',
    }
    return out, config


def to_timm(sd, arch):
    out = {
        'cls_token': sd['class_token'],
        'pos_embed': sd['encoder.pos_embedding'],
        'patch_embed.proj.weight': sd['conv_proj.weight'],
        'patch_embed.proj.bias': sd['conv_proj.bias'],
        'norm.weight': sd['encoder.ln.weight'],
        'norm.bias': sd['encoder.ln.bias'],
        'head.weight': sd['heads.head.weight'],
        'head.bias': sd['heads.head.bias'],
    }
    for i, b in blocks(sd, arch['depth']):
        q = f'blocks.{i}.'
        out[q + 'norm1.weight'] = b['ln_1.weight']
        out[q + 'norm1.bias'] = b['ln_1.bias']
        out[q + 'attn.qkv.weight'] = b['self_attention.in_proj_weight']
        if arch['qkv_bias']:
            out[q + 'attn.qkv.bias'] = b['self_attention.in_proj_bias']
        out[q + 'attn.proj.weight'] = b['self_attention.out_proj.weight']
        out[q + 'attn.proj.bias'] = b['self_attention.out_proj.bias']
        out[q + 'norm2.weight'] = b['ln_2.weight']
        out[q + 'norm2.bias'] = b['ln_2.bias']
        out[q + 'mlp.fc1.weight'] = b['mlp.0.weight']
        out[q + 'mlp.fc1.bias'] = b['mlp.0.bias']
        out[q + 'mlp.fc2.weight'] = b['mlp.3.weight']
        out[q + 'mlp.fc2.bias'] = b['mlp.3.bias']
    return out


def tensor_bytes(t, dtype):
    t = t.detach().contiguous().cpu()
    if dtype == 'F32':
        return t.to(torch.float32).numpy().astype('<f4').tobytes()
    if dtype == 'F16':
        return t.to(torch.float16).numpy().astype('<f2').tobytes()
    if dtype == 'BF16':
        return t.to(torch.bfloat16).view(torch.int16).numpy().astype('<i2').tobytes()
    raise ValueError(dtype)


def write_safetensors(path, tensors, dtype='F32', metadata=None):
    """The safetensors format by hand (the Python package is not installed here): u64 header length, JSON, data."""
    header, chunks, offset = {}, [], 0
    if metadata:
        header['__metadata__'] = metadata
    for name in sorted(tensors):
        data = tensor_bytes(tensors[name], dtype)
        header[name] = {'dtype': dtype, 'shape': list(tensors[name].shape), 'data_offsets': [offset, offset + len(data)]}
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


def write_json(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(value, f, indent=2)
        f.write('\n')


def resampled_forward(model, arch, pixels, size):
    """torchvision's forward by hand, since its VisionTransformer only takes square images of its own size."""
    d, p = arch['width'], arch['patch_size']
    g = arch['image_size'] // p
    rows, cols = size[0] // p, size[1] // p
    pos = model.encoder.pos_embedding
    grid = pos[:, 1:].reshape(1, g, g, d).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(rows, cols), mode='bicubic', align_corners=False)
    pos = torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, rows * cols, d)], dim=1)
    x = model.conv_proj(pixels)
    n = x.shape[0]
    x = x.reshape(n, d, rows * cols).permute(0, 2, 1)
    x = torch.cat([model.class_token.expand(n, -1, -1), x], dim=1) + pos
    out = {'pixels': pixels.float(), 'hidden_0': x}
    for i, layer in enumerate(model.encoder.layers):
        x = layer(x)
        out[f'hidden_{i + 1}'] = x
    out['features'] = model.encoder.ln(x)[:, 0]
    return out


def main():
    for arch in ARCHS:
        gen = torch.Generator().manual_seed(arch['seed'])
        model = VisionTransformer(
            image_size=arch['image_size'], patch_size=arch['patch_size'], num_layers=arch['depth'],
            num_heads=arch['heads'], hidden_dim=arch['width'], mlp_dim=arch['mlp'], num_classes=5,
            norm_layer=partial(nn.LayerNorm, eps=arch['eps']))
        randomize(model, arch, gen)
        model.eval()
        sd = {k: v.clone() for k, v in model.state_dict().items()}

        ref = model.double()
        hidden, features = {}, {}
        hooks = [ref.encoder.layers[0].register_forward_pre_hook(lambda m, args: hidden.__setitem__(0, args[0].detach()))]
        for i, layer in enumerate(ref.encoder.layers):
            hooks.append(layer.register_forward_hook(lambda m, args, out, i=i: hidden.__setitem__(i + 1, out.detach())))
        hooks.append(ref.encoder.ln.register_forward_hook(lambda m, args, out: features.__setitem__('cls', out[:, 0].detach())))
        s = arch['image_size']
        pixels = torch.randn(arch['images'], 3, s, s, generator=gen, dtype=torch.float32)
        with torch.no_grad():
            ref(pixels.double())
        for h in hooks:
            h.remove()

        base = os.path.join(ROOT, arch['name'])
        reference = {'pixels': pixels, 'features': features['cls']}
        for i in range(arch['depth'] + 1):
            reference[f'hidden_{i}'] = hidden[i]
        meta = {k: json.dumps(arch[k]) for k in ['image_size', 'patch_size', 'width', 'depth', 'heads', 'mlp', 'eps', 'qkv_bias']}
        write_safetensors(os.path.join(base, 'reference.safetensors'), reference, 'F32', meta)

        hf, config = to_hf(sd, arch)
        write_safetensors(os.path.join(base, 'hf', 'model.safetensors'), hf, arch['hf']['dtype'], {'format': 'pt'})
        write_json(os.path.join(base, 'hf', 'config.json'), config)
        write_json(os.path.join(base, 'hf', 'preprocessor_config.json'), arch['hf']['preprocessor'])

        write_safetensors(os.path.join(base, 'timm', 'model.safetensors'), to_timm(sd, arch), arch['timm']['dtype'])
        if arch['timm']['config'] is not None:
            write_json(os.path.join(base, 'timm', 'config.json'), arch['timm']['config'])
        if arch['name'] == 'a':
            size = (40, 48)
            pixels = torch.randn(2, 3, *size, generator=gen, dtype=torch.float32)
            with torch.no_grad():
                resampled = resampled_forward(ref, arch, pixels.double(), size)
            write_safetensors(os.path.join(base, 'resampled.safetensors'), resampled, 'F32',
                              {'image_size': json.dumps(list(size))})
        print(f"arch {arch['name']}: features max|.| {features['cls'].abs().max():.3f}, "
              f"last block max|.| {hidden[arch['depth']].abs().max():.3f}")


if __name__ == '__main__':
    main()
