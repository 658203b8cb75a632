"""The torch side of bench/fit.mjs: the same job as the project's detector, written as a PyTorch user would.

Fit Transformaly on the first TRAIN images of one Fashion-MNIST class (file order) and score TEST images (the first
TEST/10 of every class of the test split, in file order): the held-out split and the per-epoch order are the project's
(mulberry32 permutations, re-implemented in scripts/golden/project_reference.py, which also holds the student block
and its initialisation); images are resized to 224 with PIL (bicubic) and normalised with mean = std = 0.5; the
teacher is a pre-norm ViT read from a timm-layout safetensors file; one student for the last block (Transformaly's
initialisation), Adam (lr 1e-4), MSE over all tokens; each epoch streams the teacher over the training batches and
then the held-out ones (best epoch by held-out loss), as the authors' code does; then the teacher gives the CLS
features and the taps of the fit, held-out and test images; PCA-whitened (90%) Gaussian for the pre-trained space,
Gaussian for the fine-tuned one (scikit-learn), summed; AUROC per space.

Usage: python3 fit_torch.py CHECKPOINT HEADS DATA_DIR CLASS TRAIN TEST EPOCHS BATCH THREADS
Prints one JSON line: seconds (load, fit, score, in-process total) and the AUROCs.
"""
import json
import math
import os
import struct
import sys
import time

t_start = time.perf_counter()
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score
from sklearn.mixture import GaussianMixture

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'scripts', 'golden'))
from project_reference import Block, epoch_order, held_out_split, init_student, read_idx  # noqa: E402

checkpoint, heads, data_dir, normal_class = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
train_count, test_count, epochs, batch, threads = (int(v) for v in sys.argv[5:10])
torch.set_num_threads(threads)
SEED, VALIDATION_FRACTION, LR, EPS = 0, 0.1, 1e-4, 1e-6
def read_safetensors(path):
    with open(path, 'rb') as f:
        size = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(size))
        blob = f.read()
    out = {}
    for name, entry in header.items():
        if name == '__metadata__':
            continue
        assert entry['dtype'] == 'F32', f'{name}: {entry["dtype"]}'
        start, end = entry['data_offsets']
        out[name] = torch.from_numpy(np.frombuffer(blob[start:end], dtype=np.float32).reshape(entry['shape']).copy())
    return out


class Teacher(torch.nn.Module):
    def __init__(self, weights, heads):
        super().__init__()
        d = weights['cls_token'].shape[-1]
        depth = 1 + max(int(k.split('.')[1]) for k in weights if k.startswith('blocks.'))
        mlp = weights['blocks.0.mlp.fc1.weight'].shape[0]
        p = weights['patch_embed.proj.weight'].shape[-1]
        self.cls_token = torch.nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = torch.nn.Parameter(torch.zeros(weights['pos_embed'].shape))
        self.patch_embed = torch.nn.Module()
        self.patch_embed.proj = torch.nn.Conv2d(3, d, p, p)
        self.blocks = torch.nn.ModuleList([Block(d, heads, mlp, EPS) for _ in range(depth)])
        self.norm = torch.nn.LayerNorm(d, eps=EPS)
        self.load_state_dict({k: v for k, v in weights.items() if not k.startswith('head')})

    def forward(self, pixels, tap):
        x = self.patch_embed.proj(pixels).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        taps = None
        for i, block in enumerate(self.blocks):
            y = block(x)
            if i == tap:
                taps = (x, y)
            x = y
        return self.norm(x)[:, 0], taps


def pixels_of(images):
    out = np.empty((len(images), 3, 224, 224), dtype=np.float32)
    for i, img in enumerate(images):
        a = np.asarray(Image.fromarray(img, 'L').resize((224, 224), Image.BICUBIC), dtype=np.float32) / 255.0
        out[i] = (a - 0.5) / 0.5
    return torch.from_numpy(out)


def batches_of(images, order):
    for start in range(0, len(order), batch):
        yield pixels_of(images[order[start:start + batch]])


# --------------------------------------------------------------------------------------------------------- the job
train_images, train_labels = read_idx(data_dir, 'train-images-idx3-ubyte.gz'), read_idx(data_dir, 'train-labels-idx1-ubyte.gz')
test_images, test_labels = read_idx(data_dir, 't10k-images-idx3-ubyte.gz'), read_idx(data_dir, 't10k-labels-idx1-ubyte.gz')
normal = np.flatnonzero(train_labels == normal_class)[:train_count]
test_idx = np.sort(np.concatenate([np.flatnonzero(test_labels == c)[:test_count // 10] for c in range(10)]))
teacher = Teacher(read_safetensors(checkpoint), heads).eval()
for p in teacher.parameters():
    p.requires_grad_(False)
depth = len(teacher.blocks)
tap = depth - 1
t_loaded = time.perf_counter()

fit_ids, held_ids = held_out_split(list(normal), VALIDATION_FRACTION, SEED)
fit_ids, held_ids = np.array(fit_ids), np.array(held_ids)
d = teacher.cls_token.shape[-1]
student = init_student(d, heads, teacher.blocks[0].mlp.fc1.out_features, EPS, torch.Generator().manual_seed(0))
optimizer = torch.optim.Adam(student.parameters(), lr=LR)
best_loss, best_state = math.inf, None
for epoch in range(epochs):
    student.train()
    for pixels in batches_of(train_images, epoch_order(fit_ids, SEED, epoch)):
        with torch.no_grad():
            _, (x, y) = teacher(pixels, tap)
        loss = F.mse_loss(student(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    student.eval()
    total = 0.0
    with torch.no_grad():
        for pixels in batches_of(train_images, held_ids):
            _, (x, y) = teacher(pixels, tap)
            total += ((student(x) - y) ** 2).mean(dim=(1, 2)).sum().item()
    held_loss = total / max(len(held_ids), 1)
    if held_loss < best_loss:
        best_loss, best_state = held_loss, {k: v.clone() for k, v in student.state_dict().items()}
student.load_state_dict(best_state)
student.eval()


def features(images, ids):
    cls, disc = [], []
    with torch.no_grad():
        for pixels in batches_of(images, ids):
            c, (x, y) = teacher(pixels, tap)
            cls.append(c.numpy().astype(np.float64))
            disc.append(((student(x) - y) ** 2).mean(dim=(1, 2)).numpy().astype(np.float64)[:, None])
    return np.concatenate(cls), np.concatenate(disc)


fit_cls, fit_disc = features(train_images, fit_ids)
pca = PCA(n_components=0.9, whiten=True, svd_solver='full').fit(fit_cls)
pre = GaussianMixture(1, covariance_type='full', random_state=0).fit(pca.transform(fit_cls))
fine = GaussianMixture(1, covariance_type='full', random_state=0).fit(fit_disc)
held_cls, held_disc = features(train_images, held_ids)
threshold = np.quantile(pre.score_samples(pca.transform(held_cls)) + fine.score_samples(held_disc), 0.05)
t_fit = time.perf_counter()

test_cls, test_disc = features(test_images, test_idx)
scores = {'pretrained': pre.score_samples(pca.transform(test_cls)), 'finetuned': fine.score_samples(test_disc)}
scores['combined'] = scores['pretrained'] + scores['finetuned']
anomalous = test_labels[test_idx] != normal_class
t_score = time.perf_counter()
print(json.dumps({
    'seconds': {'load': t_loaded - t_start, 'fit': t_fit - t_loaded, 'score': t_score - t_fit, 'inProcess': t_score - t_start},
    'auroc': {space: float(roc_auc_score(anomalous, -s)) for space, s in scores.items()},
    'threshold': float(threshold),
}))
