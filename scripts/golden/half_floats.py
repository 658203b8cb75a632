"""Golden values for core/src/numeric/half.ts: float32 -> float16 (numpy's astype, round to nearest even) and
float32 -> bfloat16 (torch's to(torch.bfloat16), round to nearest even), as raw 16-bit patterns.

Rerun (deterministic) from the repository root with Debian's Python (numpy, torch 1.13):

    /usr/bin/python3 scripts/golden/half_floats.py

It writes test/golden/half/half_floats.json, read by test/half.test.ts: the float32 inputs as their bit patterns,
and the float16 and bfloat16 bits of each. The inputs cover normal values, halfway cases (ties to even), values
just above and below a tie, float16 subnormals and underflow, overflow to infinity, infinities, zeros of both signs
and random values across the exponent range.
"""
import json
import os

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(__file__), '..', '..', 'test', 'golden', 'half', 'half_floats.json')

rng = np.random.default_rng(7)
special = [0.0, -0.0, 1.0, -1.0, 0.5, 2.0, 65504.0, 65505.0, 65519.0, 65520.0, 1e6, -1e6, np.inf, -np.inf,
           6.1035156e-05, 6.0e-05, 5.9604645e-08, 2.9802322e-08, 2.9802326e-08, 1e-8, 3e-38, -3e-38,
           1.0009765625, 1.00048828125, 1.00146484375, 1.0000001, 0.33333334, 3.4028235e38, -3.4028235e38,
           1.00390625, 1.001953125, 1.005859375]
# Exact ties of both formats and their neighbours, for both parities of the kept bit.
ties = []
for base in [1.0, 1.5, 3.0, 1000.0, 0.001]:
    b = np.float32(base).view(np.uint32)
    for mant_bits in [13, 16]:
        half_ulp = np.uint32(1 << (mant_bits - 1))
        for k in range(4):
            t = np.uint32(b + (np.uint32(k) << np.uint32(mant_bits)) + half_ulp)
            ties += [t, t - np.uint32(1), t + np.uint32(1)]
values = np.array(special, dtype=np.float32)
random = np.concatenate([
    rng.standard_normal(400).astype(np.float32),
    (rng.standard_normal(400) * 10.0 ** rng.integers(-9, 7, 400)).astype(np.float32),
])
inputs = np.concatenate([values, np.array(ties, dtype=np.uint32).view(np.float32), random])
bits = inputs.view(np.uint32)
f16 = inputs.astype(np.float16).view(np.uint16)
bf16 = torch.from_numpy(inputs.copy()).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
os.makedirs(os.path.dirname(OUT), exist_ok=True)
with open(OUT, 'w') as f:
    json.dump({
        'float32Bits': [int(x) for x in bits],
        'float16Bits': [int(x) for x in f16],
        'bfloat16Bits': [int(x) for x in bf16],
    }, f)
print(f'wrote {len(inputs)} values to {OUT}')
