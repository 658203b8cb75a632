"""The torch side of bench/embed.mjs: the same job as `transformaly embed` on ViT-B/16 at 224 px.

Decodes the PNG files (sorted by path) with PIL, resizes to 224 (bicubic), normalises with mean = std = 0.5, runs
torchvision's VisionTransformer (random weights) in batches, takes the final-LayerNorm CLS token and writes a float32
(N, 768) .npy. Usage: python3 embed_torch.py IMAGE_DIR OUT.npy THREADS BATCH
"""
import sys
import time

t0 = time.perf_counter()
import numpy as np
import torch
import torchvision
from PIL import Image
from pathlib import Path

image_dir, out, threads, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
torch.manual_seed(0)
model = torchvision.models.vit_b_16(weights=None).eval()


def features(x: torch.Tensor) -> torch.Tensor:
    # VisionTransformer.forward without the head: patch embedding, CLS token, encoder (ends with its LayerNorm).
    x = model._process_input(x)
    cls = model.class_token.expand(x.shape[0], -1, -1)
    x = model.encoder(torch.cat([cls, x], dim=1))
    return x[:, 0]


paths = sorted(str(p) for p in Path(image_dir).rglob('*.png'))
rows = []
t_forward = 0.0
with torch.no_grad():
    for start in range(0, len(paths), batch):
        pixels = []
        for p in paths[start:start + batch]:
            img = Image.open(p).convert('RGB').resize((224, 224), Image.BICUBIC)
            a = (np.asarray(img, dtype=np.float32) / 255.0 - 0.5) / 0.5
            pixels.append(a.transpose(2, 0, 1))
        t = time.perf_counter()
        rows.append(features(torch.from_numpy(np.stack(pixels))).numpy())
        t_forward += time.perf_counter() - t
np.save(out, np.concatenate(rows).astype(np.float32))
print(f'{{"forward_s": {t_forward:.4f}, "total_in_process_s": {time.perf_counter() - t0:.4f}}}')
