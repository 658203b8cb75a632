#!/usr/bin/python3
"""Reference side of bench/training-step.mjs: one ViT-B block training step in torch autograd + torch.optim.Adam.

Run by bench/training-step.mjs with Debian's Python (torch 1.13) and OPENBLAS_CORETYPE=SkylakeX, in `--serve` mode:
it prints `ready`, then answers each `step` line on stdin with one JSON line (the step's wall and CPU seconds) and
`quit` with its peak RSS, so that the two engines' steps can alternate and share whatever else loads the machine.
Standalone, it times its own steps:

    OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 bench/training_step_torch.py --threads 2 --steps 5 --warmup 2

The block is timm's pre-norm ViT block (attention written as timm writes it: (q @ k^T) * scale, softmax, @ v), trained
to reproduce a random target with the mean squared error over every element.
"""
import argparse
import json
import resource
import sys
import time

import torch
from torch import nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, dim, heads, mlp, eps, qkv_bias=True):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.fc1 = nn.Linear(dim, mlp)
        self.fc2 = nn.Linear(mlp, dim)

    def forward(self, x):
        n, t, d = x.shape
        hd = d // self.heads
        qkv = self.qkv(self.norm1(x)).reshape(n, t, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = ((q @ k.transpose(-2, -1)) * (hd ** -0.5)).softmax(dim=-1)
        x = x + self.proj((attn @ v).transpose(1, 2).reshape(n, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--steps', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--batch', type=int, default=32)
    parser.add_argument('--tokens', type=int, default=197)
    parser.add_argument('--width', type=int, default=768)
    parser.add_argument('--heads', type=int, default=12)
    parser.add_argument('--mlp', type=int, default=3072)
    parser.add_argument('--serve', action='store_true')
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    block = Block(args.width, args.heads, args.mlp, 1e-6)
    opt = torch.optim.Adam(block.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
    x = torch.randn(args.batch, args.tokens, args.width)
    target = torch.randn(args.batch, args.tokens, args.width)

    def step():
        start, cpu = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(block(x), target)
        loss.backward()
        opt.step()
        value = loss.item()
        return {'seconds': time.perf_counter() - start, 'cpuSeconds': time.process_time() - cpu, 'loss': value}

    info = {'engine': 'torch', 'version': torch.__version__, 'threads': torch.get_num_threads()}
    if args.serve:
        print('ready', flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == 'step':
                print(json.dumps(step()), flush=True)
            elif command == 'quit':
                break
        print(json.dumps({**info, 'peakRssBytes': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}), flush=True)
        return
    results = [step() for _ in range(args.warmup + args.steps)][args.warmup:]
    print(json.dumps({**info, 'times': [r['seconds'] for r in results], 'cpuTimes': [r['cpuSeconds'] for r in results],
                      'peakRssBytes': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      'loss': results[-1]['loss']}))


if __name__ == '__main__':
    main()
