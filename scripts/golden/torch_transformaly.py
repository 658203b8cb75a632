#!/usr/bin/python3
"""Golden files for the end-to-end parity test of the distiller (test/distill-parity.test.ts).

Rerun from the repository root with Debian's Python (torch 1.13, scikit-learn 1.2.1), not the `python3` on PATH:

    /usr/bin/python3 scripts/golden/torch_transformaly.py

It is deterministic (fixed seeds, fixed thread count) and rewrites test/golden/distill/. It runs Transformaly in
PyTorch on a Fashion-MNIST subset (Debian's dataset-fashion-mnist, /usr/share/datasets/fashion-mnist) with a small
random-weight ViT at 28 px (no resize happens), in both protocols. The subset: classes T-shirt/top, Pullover and
Sneaker, the first 300 training and the first 300 test images of each (in file order). It takes about 5 minutes.

- teacher: a pre-norm ViT (patch 4, width 48, depth 4, 4 heads, MLP 96), random weights, written in the Hugging Face
  layout (teacher/config.json, preprocessor_config.json, model.safetensors), float32;
- students for blocks 1..3 (`{ from: 1, to: 4 }`), initialised as Transformaly does (xavier-uniform q, k, v, proj,
  fc1, fc2; biases N(0, 1e-6^2); LayerNorm 1/0), written to students_init.safetensors keyed block{i}.<timm name>
  (the project reads them through the distiller's initialWeights option, so the two PRNGs need not agree);
- per case: the project's held-out split (heldOutSplit: mulberry32 Fisher-Yates, round(0.1 n) held out, seed 0) and
  per-epoch order (the Detector's epochOrder: the same permutation seeded 0 + 1 + epoch), re-implemented in
  project_reference.py beside this script, so that both sides see the same batches; batch 32; Adam with betas
  0.9/0.999 and eps 1e-8 but lr 1e-3 (the method's 1e-4 barely moves the students in two epochs); 2 epochs; MSE over
  all tokens and channels; the teacher frozen; each student keeps the epoch of lowest held-out loss;
- scores: pre-trained = final-LayerNorm CLS, PCA-whitened (90% of the variance) + GaussianMixture(1, 'full');
  fine-tuned = per block mean squared student-teacher discrepancy (best weights) + GaussianMixture(1, 'full');
  combined = their sum; AUROC per case of each (anomalous = positive, -score).

expected.json holds the subset's file indices, each case's held-out images and epoch orders (file indices), the
per-epoch training and held-out losses of every student, the best epochs and the AUROCs. No features are stored.
"""
import json
import os
import struct

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score
from sklearn.mixture import GaussianMixture

from project_reference import Block, epoch_order, held_out_split, init_student, read_idx

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'test', 'golden', 'distill')
DATA = '/usr/share/datasets/fashion-mnist'
CLASS_NAMES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot']

CLASSES = [0, 2, 7]          # T-shirt/top, Pullover, Sneaker: one hard pair and one easy class
TRAIN_PER_CLASS = 300
TEST_PER_CLASS = 300
ARCH = dict(image_size=28, patch_size=4, width=48, depth=4, heads=4, mlp=96, eps=1e-6)
MEAN, STD = 0.2860, 0.3530   # Fashion-MNIST's pixel statistics, the same for the three (repeated) channels
BLOCKS = [1, 2, 3]
EPOCHS = 2
BATCH = 32
LR, BETAS, ADAM_EPS = 1e-3, (0.9, 0.999), 1e-8
SEED = 0                     # the config's seed: held-out split and epoch orders
VALIDATION_FRACTION = 0.1
TEACHER_SEED, STUDENT_SEED = 1234, 99
THREADS = 2

# ------------------------------------------------------------------------------------------------------------ data

def subset_indices(labels, per_class):
    """The first `per_class` images of each chosen class, in file order."""
    keep = []
    for c in CLASSES:
        keep.extend(np.flatnonzero(labels == c)[:per_class].tolist())
    return sorted(keep)


def pixels_of(images, indices):
    x = torch.tensor(images[indices], dtype=torch.float32) / 255
    x = (x - MEAN) / STD
    return x.unsqueeze(1).repeat(1, 3, 1, 1).contiguous()


# ----------------------------------------------------------------------------------------------------------- model

class Teacher(torch.nn.Module):
    def __init__(self, arch):
        super().__init__()
        d, p = arch['width'], arch['patch_size']
        tokens = (arch['image_size'] // p) ** 2 + 1
        self.cls_token = torch.nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = torch.nn.Parameter(torch.zeros(1, tokens, d))
        self.proj = torch.nn.Conv2d(3, d, p, p)
        self.blocks = torch.nn.ModuleList([Block(d, arch['heads'], arch['mlp'], arch['eps']) for _ in range(arch['depth'])])
        self.norm = torch.nn.LayerNorm(d, eps=arch['eps'])

    def forward(self, pixels, taps=()):
        x = self.proj(pixels).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        out = {}
        for i, block in enumerate(self.blocks):
            y = block(x)
            if i in taps:
                out[i] = (x, y)
            x = y
        return self.norm(x)[:, 0], out


def randomize_teacher(model, gen):
    """Random weights of a realistic scale, every parameter (LayerNorm affines included) away from its default."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'norm' in name:
                p.copy_((1.0 if name.endswith('weight') else 0.0) + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith('bias'):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif name in ('cls_token', 'pos_embed'):
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) / p[0].numel() ** 0.5)


# ------------------------------------------------------------------------------------------------------------ files

def write_safetensors(path, tensors):
    """The safetensors format by hand (the Python package is not installed here): u64 header length, JSON, data."""
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        data = tensors[name].detach().contiguous().to(torch.float32).numpy().astype('<f4').tobytes()
        header[name] = {'dtype': 'F32', 'shape': list(tensors[name].shape), 'data_offsets': [offset, offset + len(data)]}
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


def write_json(path, value, indent=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(value, f, indent=indent, separators=None if indent else (',', ':'))
        f.write('\n')


def teacher_to_hf(model, arch):
    d = arch['width']
    sd = model.state_dict()
    out = {
        'embeddings.cls_token': sd['cls_token'],
        'embeddings.position_embeddings': sd['pos_embed'],
        'embeddings.patch_embeddings.projection.weight': sd['proj.weight'],
        'embeddings.patch_embeddings.projection.bias': sd['proj.bias'],
        'layernorm.weight': sd['norm.weight'],
        'layernorm.bias': sd['norm.bias'],
    }
    for i in range(arch['depth']):
        b, q = f'blocks.{i}.', f'encoder.layer.{i}.'
        for j, part in enumerate(['query', 'key', 'value']):
            out[q + f'attention.attention.{part}.weight'] = sd[b + 'attn.qkv.weight'][j * d:(j + 1) * d]
            out[q + f'attention.attention.{part}.bias'] = sd[b + 'attn.qkv.bias'][j * d:(j + 1) * d]
        out[q + 'attention.output.dense.weight'] = sd[b + 'attn.proj.weight']
        out[q + 'attention.output.dense.bias'] = sd[b + 'attn.proj.bias']
        out[q + 'layernorm_before.weight'] = sd[b + 'norm1.weight']
        out[q + 'layernorm_before.bias'] = sd[b + 'norm1.bias']
        out[q + 'layernorm_after.weight'] = sd[b + 'norm2.weight']
        out[q + 'layernorm_after.bias'] = sd[b + 'norm2.bias']
        out[q + 'intermediate.dense.weight'] = sd[b + 'mlp.fc1.weight']
        out[q + 'intermediate.dense.bias'] = sd[b + 'mlp.fc1.bias']
        out[q + 'output.dense.weight'] = sd[b + 'mlp.fc2.weight']
        out[q + 'output.dense.bias'] = sd[b + 'mlp.fc2.bias']
    config = {
        'architectures': ['ViTModel'],
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
        'qkv_bias': True,
        'encoder_stride': arch['patch_size'],
        'torch_dtype': 'float32',
    }
    preprocessor = {
        'image_processor_type': 'ViTImageProcessor',
        'do_resize': True,
        'size': {'height': arch['image_size'], 'width': arch['image_size']},
        'resample': 2,
        'do_rescale': True,
        'rescale_factor': 1 / 255,
        'do_normalize': True,
        'image_mean': [MEAN] * 3,
        'image_std': [STD] * 3,
    }
    return out, config, preprocessor


# -------------------------------------------------------------------------------------------------------- the method

def teacher_pass(teacher, x):
    with torch.no_grad():
        return teacher(x, taps=BLOCKS)


def batches_of(indices):
    return [indices[i:i + BATCH] for i in range(0, len(indices), BATCH)]


def discrepancy(student, x_in, x_out):
    with torch.no_grad():
        return ((student(x_in) - x_out) ** 2).mean(dim=(1, 2))


def run_case(case_id, train_idx, test_idx, test_anomalous, images, test_images, teacher, init_states):
    fit, held = held_out_split(train_idx, VALIDATION_FRACTION, SEED)
    students = []
    for b in BLOCKS:
        s = Block(ARCH['width'], ARCH['heads'], ARCH['mlp'], ARCH['eps'])
        s.load_state_dict(init_states[b])
        opt = torch.optim.Adam(s.parameters(), lr=LR, betas=BETAS, eps=ADAM_EPS)
        students.append({'block': b, 'model': s, 'opt': opt, 'best': None, 'best_loss': None, 'best_epoch': -1})
    orders, train_hist, val_hist = [], [], []
    for epoch in range(EPOCHS):
        order = epoch_order(fit, SEED, epoch)
        orders.append(order)
        sums, count = np.zeros(len(BLOCKS)), 0
        for batch in batches_of(order):
            _, taps = teacher_pass(teacher, pixels_of(images, batch))
            for i, st in enumerate(students):
                x_in, x_out = taps[st['block']]
                st['opt'].zero_grad()
                loss = ((st['model'](x_in) - x_out) ** 2).mean()
                loss.backward()
                st['opt'].step()
                sums[i] += loss.item() * len(batch)
            count += len(batch)
        train_hist.append((sums / count).tolist())
        vsums = np.zeros(len(BLOCKS))
        for batch in batches_of(held):
            _, taps = teacher_pass(teacher, pixels_of(images, batch))
            for i, st in enumerate(students):
                vsums[i] += discrepancy(st['model'], *taps[st['block']]).double().sum().item()
        val = (vsums / len(held)).tolist()
        val_hist.append(val)
        for i, st in enumerate(students):
            if st['best_loss'] is None or val[i] < st['best_loss']:
                st['best_loss'], st['best_epoch'] = val[i], epoch
                st['best'] = {k: v.clone() for k, v in st['model'].state_dict().items()}
    for st in students:
        st['model'].load_state_dict(st['best'])

    def features(idx, imgs):
        pre, fine = [], []
        for batch in batches_of(idx):
            cls, taps = teacher_pass(teacher, pixels_of(imgs, batch))
            pre.append(cls.double().numpy())
            fine.append(torch.stack([discrepancy(st['model'], *taps[st['block']]) for st in students], dim=1).double().numpy())
        return np.concatenate(pre), np.concatenate(fine)

    pre_fit, fine_fit = features(fit, images)
    pre_test, fine_test = features(test_idx, test_images)
    pca = PCA(n_components=0.9, whiten=True, svd_solver='full').fit(pre_fit)
    gmm_pre = GaussianMixture(n_components=1, covariance_type='full', random_state=0).fit(pca.transform(pre_fit))
    gmm_fine = GaussianMixture(n_components=1, covariance_type='full', random_state=0).fit(fine_fit)
    s_pre = gmm_pre.score_samples(pca.transform(pre_test))
    s_fine = gmm_fine.score_samples(fine_test)
    y = np.asarray(test_anomalous, dtype=int)
    aurocs = {name: float(roc_auc_score(y, -s)) for name, s in
              [('pretrained', s_pre), ('finetuned', s_fine), ('combined', s_pre + s_fine)]}
    print(f'{case_id}: fit {len(fit)} held-out {len(held)} PCA components {pca.n_components_}; '
          f'train loss {train_hist}; held-out {val_hist}; '
          f'fine-tuned feature std {fine_fit.std(axis=0)}; AUROC {aurocs}')
    return {
        'heldOut': held,
        'epochOrders': orders,
        'trainLoss': train_hist,
        'heldOutLoss': val_hist,
        'bestEpochs': [st['best_epoch'] for st in students],
        'pcaComponents': int(pca.n_components_),
        'auroc': aurocs,
    }


def main():
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    train_images, train_labels = read_idx(DATA, 'train-images-idx3-ubyte.gz'), read_idx(DATA, 'train-labels-idx1-ubyte.gz')
    test_images, test_labels = read_idx(DATA, 't10k-images-idx3-ubyte.gz'), read_idx(DATA, 't10k-labels-idx1-ubyte.gz')
    train_idx = subset_indices(train_labels, TRAIN_PER_CLASS)
    test_idx = subset_indices(test_labels, TEST_PER_CLASS)

    teacher = Teacher(ARCH)
    randomize_teacher(teacher, torch.Generator().manual_seed(TEACHER_SEED))
    teacher.eval()
    hf, config, preprocessor = teacher_to_hf(teacher, ARCH)
    write_safetensors(os.path.join(ROOT, 'teacher', 'model.safetensors'), hf)
    write_json(os.path.join(ROOT, 'teacher', 'config.json'), config, indent=2)
    write_json(os.path.join(ROOT, 'teacher', 'preprocessor_config.json'), preprocessor, indent=2)

    gen = torch.Generator().manual_seed(STUDENT_SEED)
    init_states, init_file = {}, {}
    for b in BLOCKS:
        s = init_student(ARCH['width'], ARCH['heads'], ARCH['mlp'], ARCH['eps'], gen)
        init_states[b] = {k: v.clone() for k, v in s.state_dict().items()}
        for k, v in init_states[b].items():
            init_file[f'block{b}.{k}'] = v
    write_safetensors(os.path.join(ROOT, 'students_init.safetensors'), init_file)

    cases = {}
    for mode in ['unimodal', 'multimodal']:
        for c in CLASSES:
            name = CLASS_NAMES[c]
            normal = (lambda lab: lab == c) if mode == 'unimodal' else (lambda lab: lab != c)
            case_train = [i for i in train_idx if normal(train_labels[i])]
            anomalous = [not normal(test_labels[i]) for i in test_idx]
            cases[f'{mode}/{name}'] = run_case(f'{mode}/{name}', case_train, test_idx, anomalous,
                                               train_images, test_images, teacher, init_states)

    write_json(os.path.join(ROOT, 'expected.json'), {
        'about': 'Written by scripts/golden/torch_transformaly.py; indices are positions in the IDX files.',
        'torch': torch.__version__,
        'classes': [CLASS_NAMES[c] for c in CLASSES],
        'trainIndices': train_idx,
        'testIndices': test_idx,
        'blocks': BLOCKS,
        'epochs': EPOCHS,
        'batchSize': BATCH,
        'seed': SEED,
        'validationFraction': VALIDATION_FRACTION,
        'adam': {'lr': LR, 'betas': list(BETAS), 'eps': ADAM_EPS},
        'cases': cases,
    })


if __name__ == '__main__':
    main()
