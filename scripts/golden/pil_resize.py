"""Golden values for core/src/data resizing: Pillow's Image.resize on float32 ('F' mode) images.

Rerun (deterministic, fixed seed) from the repository root with Debian's Python, which has Pillow and numpy:

    /usr/bin/python3 scripts/golden/pil_resize.py

It writes test/golden/data/pil_resize.json, read by test/data-preprocess.test.ts. Each channel of an RGB image is
resized as its own 'F' image, because Pillow's float resampling keeps full precision (no rounding to 8 bits), which
is the reference for our resize of float [0, 1] pixels. Values are written with 9 significant digits, enough to
identify each float32 exactly.
"""

import json
import os

import numpy as np
import PIL
from PIL import Image

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "test", "golden", "data", "pil_resize.json")

FILTERS = {
    "nearest": Image.NEAREST,
    "bilinear": Image.BILINEAR,
    "bicubic": Image.BICUBIC,
}


def resize_rgb(hwc, height, width, resample):
    channels = []
    for c in range(3):
        plane = Image.fromarray(np.ascontiguousarray(hwc[:, :, c]), mode="F")
        out = plane.resize((width, height), FILTERS[resample])
        channels.append(np.asarray(out, dtype=np.float32))
    return np.stack(channels, axis=2)


def floats(array):
    # 9 significant digits identify a float32 uniquely; Math.fround in the test recovers the exact value.
    return [float("%.9g" % v) for v in np.asarray(array, dtype=np.float32).reshape(-1)]


def main():
    rng = np.random.RandomState(20240611)
    inputs = {
        # Random noise: every output pixel depends on its exact weights, so an off-by-one tap shows at once.
        "noise37x29": rng.uniform(0.0, 1.0, size=(29, 37, 3)).astype(np.float32),
        # A Fashion-MNIST-sized grayscale-like image expanded to RGB, as the 28x28 -> larger case exercises.
        "gray28": np.repeat(rng.uniform(0.0, 1.0, size=(28, 28, 1)).astype(np.float32), 3, axis=2),
    }
    cases = [
        ("noise37x29", 16, 16, "bilinear"),
        ("noise37x29", 16, 16, "bicubic"),
        ("noise37x29", 16, 16, "nearest"),
        ("noise37x29", 48, 40, "bilinear"),
        ("noise37x29", 48, 40, "bicubic"),
        ("noise37x29", 48, 40, "nearest"),
        # Down in height, up in width: each axis picks its own support.
        ("noise37x29", 13, 50, "bicubic"),
        # Width unchanged: only the vertical pass runs.
        ("noise37x29", 20, 37, "bilinear"),
        # Height unchanged: only the horizontal pass runs.
        ("noise37x29", 29, 11, "bicubic"),
        ("gray28", 40, 40, "bicubic"),
        ("gray28", 9, 9, "bilinear"),
    ]
    out = {
        "pillow": PIL.__version__,
        "inputs": {
            name: {"height": int(a.shape[0]), "width": int(a.shape[1]), "data": floats(a)} for name, a in inputs.items()
        },
        "cases": [],
    }
    for name, height, width, resample in cases:
        result = resize_rgb(inputs[name], height, width, resample)
        out["cases"].append(
            {
                "input": name,
                "height": height,
                "width": width,
                "resample": resample,
                "data": floats(result),
            }
        )
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(out, f)
        f.write("\n")


if __name__ == "__main__":
    main()
