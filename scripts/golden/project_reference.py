"""What the Python references share: the project's seeded orders (core/src/data/random.ts, heldOutSplit,
epochOrder) re-implemented so that torch sees the project's batches, an IDX reader, and Transformaly's student block
with its initialisation. Used by scripts/golden/torch_transformaly.py (golden files) and bench/fit_torch.py (the
fit benchmark's reference).
"""
import gzip
import math
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F

M32 = 0xFFFFFFFF


def mulberry32(seed):
    """core/src/data/random.ts, in uint32 arithmetic."""
    state = seed & M32

    def nxt():
        nonlocal state
        state = (state + 0x6D2B79F5) & M32
        t = state
        t = ((t ^ (t >> 15)) * (t | 1)) & M32
        t ^= (t + (((t ^ (t >> 7)) * (t | 61)) & M32)) & M32
        return ((t ^ (t >> 14)) & M32) / 4294967296
    return nxt


def seeded_permutation(n, seed):
    random = mulberry32(seed)
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        j = math.floor(random() * (i + 1))
        order[i], order[j] = order[j], order[i]
    return order


def held_out_split(items, fraction, seed):
    """heldOutSplit of core/src/data/protocol.ts: both sides keep the input order."""
    n = len(items)
    count = math.floor(fraction * n + 0.5)  # JavaScript's Math.round
    if fraction > 0 and n >= 2:
        count = min(max(count, 1), n - 1)
    held = [False] * n
    order = seeded_permutation(n, seed)
    for i in range(count):
        held[order[i]] = True
    return [x for x, h in zip(items, held) if not h], [x for x, h in zip(items, held) if h]


def epoch_order(items, seed, epoch):
    """The Detector's per-epoch training order (epochOrder in core/src/pipeline/detector.ts)."""
    return [items[i] for i in seeded_permutation(len(items), seed + 1 + epoch)]


def read_idx(folder, name):
    """A gzipped IDX file: images as uint8 [n, rows, cols], labels as uint8 [n]."""
    with gzip.open(os.path.join(folder, name), 'rb') as f:
        data = f.read()
    if struct.unpack('>I', data[:4])[0] == 0x803:
        n, rows, cols = struct.unpack('>III', data[4:16])
        return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, rows, cols)
    return np.frombuffer(data, dtype=np.uint8, offset=8)


class Block(torch.nn.Module):
    """A pre-norm ViT block with timm's parameter names (norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2)."""

    def __init__(self, d, heads, mlp, eps):
        super().__init__()
        self.heads = heads
        self.norm1 = torch.nn.LayerNorm(d, eps=eps)
        self.attn = torch.nn.Module()
        self.attn.qkv = torch.nn.Linear(d, 3 * d)
        self.attn.proj = torch.nn.Linear(d, d)
        self.norm2 = torch.nn.LayerNorm(d, eps=eps)
        self.mlp = torch.nn.Module()
        self.mlp.fc1 = torch.nn.Linear(d, mlp)
        self.mlp.fc2 = torch.nn.Linear(mlp, d)

    def forward(self, x):
        n, t, d = x.shape
        h, hd = self.heads, d // self.heads
        qkv = self.attn.qkv(self.norm1(x)).reshape(n, t, 3, h, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = torch.softmax((q @ k.transpose(-2, -1)) * hd ** -0.5, dim=-1)
        x = x + self.attn.proj((a @ v).transpose(1, 2).reshape(n, t, d))
        return x + self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x))))


def init_student(d, heads, mlp, eps, gen):
    """Transformaly's student initialisation; q, k and v are drawn on their own D x D shapes."""
    s = Block(d, heads, mlp, eps)
    with torch.no_grad():
        for part in range(3):
            bound = math.sqrt(6 / (d + d))  # xavier-uniform on the D x D shape of q, k or v alone
            s.attn.qkv.weight[part * d:(part + 1) * d].uniform_(-bound, bound, generator=gen)
        for lin in (s.attn.proj, s.mlp.fc1, s.mlp.fc2):
            fan_out, fan_in = lin.weight.shape
            bound = math.sqrt(6 / (fan_in + fan_out))
            lin.weight.uniform_(-bound, bound, generator=gen)
        for lin in (s.attn.qkv, s.attn.proj, s.mlp.fc1, s.mlp.fc2):
            lin.bias.normal_(0, 1e-6, generator=gen)
        for norm in (s.norm1, s.norm2):
            norm.weight.fill_(1)
            norm.bias.zero_()
    return s
