#!/usr/bin/python3
"""Golden file for the students' training loop (test/training-loop.test.ts): epochs of Adam steps over shuffled
batches of teacher taps, each epoch's training and held-out losses, and each student's best epoch by held-out loss.

Rerun from the repository root with Debian's Python (torch 1.13), not the `python3` on PATH:

    /usr/bin/python3 scripts/golden/torch_training_loop.py

It is deterministic (fixed seeds) and rewrites test/golden/training/loop.safetensors. It computes in float64 from
inputs exactly representable in float32, as torch_training.py does, whose block and weights it reuses; the taps are
stored as float32, the weights as float64.

The teacher is three random pre-norm ViT blocks; students are trained for blocks 1 and 2 on the teacher's taps (each
block's input and output). The training images span a rank-2 subspace of the channels while the held-out images do
not, so a student that keeps fitting its training images can get worse on the held-out ones: block 1's best epoch is
not the last one, block 2's is. The script checks both, and that each best epoch wins by a margin (0.2%) far above
the difference float32 training makes.

Arrays: train/block<b>/input|output [11, 17, 32] and heldout/block<b>/input|output [5, 17, 32] (float32),
student<b>/initial/<timm name>, student<b>/best/<timm name> (weights after the best epoch),
student<b>/final/<timm name> (after the last epoch). Metadata (JSON): spec, blocks, adam, epochs, batchSize,
orders (per epoch, the training images in batch order), trainLoss and heldOutLoss (per epoch, per student: the mean
over images of each batch's MSE weighted by its size, and the mean per-image discrepancy), bestEpochs (0-based).
"""
import os

import torch
import torch.nn.functional as F

from torch_training import block_forward, f32, randn, random_weights, write_safetensors

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'test', 'golden', 'training', 'loop.safetensors')

SPEC = dict(width=32, heads=4, mlpDim=64, tokens=17, layerNormEps=1e-6, qkvBias=True)
BLOCKS = [1, 2]
TRAIN_IMAGES = 11  # batches of 4, 4 and 3: the last, smaller batch weighs less in the epoch's loss
HELD_OUT_IMAGES = 5
BATCH = 4
EPOCHS = 8
ADAM = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-6)
MARGIN = 2e-3
# The first seed (of 1..7) whose draw shows both behaviours with the margin above.
SEED = 7


def taps(teacher, x):
    """Per block: its input and output."""
    out = {}
    for b, weights in enumerate(teacher):
        y = f32(block_forward(SPEC, weights, x))
        out[b] = (x, y)
        x = y
    return out


def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(SEED)
    teacher = [random_weights(SPEC, gen) for _ in range(3)]
    basis = randn(gen, 2, SPEC['width'])
    coefficients = torch.randn(TRAIN_IMAGES, SPEC['tokens'], 2, generator=gen, dtype=torch.float64)
    train = taps(teacher, f32((coefficients @ basis) * 1.5 + 0.2))
    held_out = taps(teacher, randn(gen, HELD_OUT_IMAGES, SPEC['tokens'], SPEC['width'], scale=2.5, shift=-0.5))

    initial = {b: random_weights(SPEC, gen) for b in BLOCKS}
    students = {b: {k: v.clone().requires_grad_(True) for k, v in initial[b].items()} for b in BLOCKS}
    optimizers = {
        b: torch.optim.Adam(list(students[b].values()), lr=ADAM['lr'], betas=(ADAM['beta1'], ADAM['beta2']), eps=ADAM['eps'])
        for b in BLOCKS
    }
    orders, train_loss, held_out_loss = [], [], []
    best = {b: None for b in BLOCKS}
    best_epoch = {b: -1 for b in BLOCKS}
    for epoch in range(EPOCHS):
        order = torch.randperm(TRAIN_IMAGES, generator=gen)
        orders.append(order.tolist())
        sums = {b: 0.0 for b in BLOCKS}
        for start in range(0, TRAIN_IMAGES, BATCH):
            idx = order[start:start + BATCH]
            for b in BLOCKS:
                optimizers[b].zero_grad()
                loss = F.mse_loss(block_forward(SPEC, students[b], train[b][0][idx]), train[b][1][idx])
                loss.backward()
                optimizers[b].step()
                sums[b] += loss.item() * len(idx)
        train_loss.append([sums[b] / TRAIN_IMAGES for b in BLOCKS])
        with torch.no_grad():
            losses = []
            for b in BLOCKS:
                discrepancy = ((block_forward(SPEC, students[b], held_out[b][0]) - held_out[b][1]) ** 2).mean(dim=(1, 2))
                losses.append(discrepancy.mean().item())
        held_out_loss.append(losses)
        for i, b in enumerate(BLOCKS):
            if best[b] is None or losses[i] < min(row[i] for row in held_out_loss[:-1]):
                best[b] = {k: v.detach().clone() for k, v in students[b].items()}
                best_epoch[b] = epoch

    for i, b in enumerate(BLOCKS):
        column = [row[i] for row in held_out_loss]
        winner = column[best_epoch[b]]
        runner_up = min(v for e, v in enumerate(column) if e != best_epoch[b])
        assert runner_up > winner * (1 + MARGIN), f'block {b}: best epoch wins by less than {MARGIN}: {column}'
    assert best_epoch[BLOCKS[0]] != EPOCHS - 1, f'block {BLOCKS[0]} should peak before the last epoch: {held_out_loss}'
    assert best_epoch[BLOCKS[1]] == EPOCHS - 1, f'block {BLOCKS[1]} should keep improving: {held_out_loss}'

    tensors = {}
    for b in BLOCKS:
        # The taps are float32 values already; stored as such.
        tensors[f'train/block{b}/input'], tensors[f'train/block{b}/output'] = (t.float() for t in train[b])
        tensors[f'heldout/block{b}/input'], tensors[f'heldout/block{b}/output'] = (t.float() for t in held_out[b])
        for k in initial[b]:
            tensors[f'student{b}/initial/{k}'] = initial[b][k]
            tensors[f'student{b}/best/{k}'] = best[b][k]
            tensors[f'student{b}/final/{k}'] = students[b][k].detach()
    write_safetensors(OUT, tensors, {
        'spec': SPEC, 'blocks': BLOCKS, 'adam': ADAM, 'epochs': EPOCHS, 'batchSize': BATCH, 'orders': orders,
        'trainLoss': train_loss, 'heldOutLoss': held_out_loss, 'bestEpochs': [best_epoch[b] for b in BLOCKS],
    })
    print('best epochs (0-based):', [best_epoch[b] for b in BLOCKS])
    for e in range(EPOCHS):
        print(f'epoch {e + 1}: train {train_loss[e]}, held-out {held_out_loss[e]}')


if __name__ == '__main__':
    main()
