"""Golden values for the Ledoit-Wolf example plugin, from scikit-learn.

Rerun (deterministic, fixed seed) from the repository root with Debian's Python, which has scikit-learn 1.2.1 and scipy:

    /usr/bin/python3 examples/scorer-ledoit-wolf/golden.py

It writes examples/scorer-ledoit-wolf/golden.json, read by test/example-plugin.test.ts. Cases:
  tall  - 60 x 8 correlated training rows: LedoitWolf().fit(X)
  wide  - 6 x 8 (fewer rows than columns, a singular sample covariance): LedoitWolf().fit(X)
  fixed - the tall rows with the shrinkage fixed at 0.3: ShrunkCovariance(shrinkage=0.3).fit(X)
Each case scores the same 20 test rows: the Gaussian log-density under (location_, covariance_), from
scipy.stats.multivariate_normal.logpdf.
"""
import json
import os

import numpy as np
import sklearn
from scipy.stats import multivariate_normal
from sklearn.covariance import LedoitWolf, ShrunkCovariance

rng = np.random.default_rng(20211208)
d = 8
# Correlated features with unequal scales and a non-zero mean, so that the shrinkage is neither 0 nor 1.
mixing = rng.normal(size=(d, d)) * np.linspace(0.3, 2.0, d)
offset = rng.normal(scale=3.0, size=d)


def draw(n):
    return rng.normal(size=(n, d)) @ mixing + offset


tall = draw(60)
wide = draw(6)
test = np.vstack([draw(16), draw(4) * 1.8])  # the last four rows are over-dispersed: low likelihoods


def case(name, train, estimator):
    model = estimator.fit(train)
    logpdf = multivariate_normal(mean=model.location_, cov=model.covariance_).logpdf(test)
    shrinkage = model.shrinkage_ if hasattr(model, "shrinkage_") else model.shrinkage
    return {
        "name": name,
        "estimator": repr(estimator),
        "train": train.tolist(),
        "shrinkage": float(shrinkage),
        "location": model.location_.tolist(),
        "covariance": model.covariance_.tolist(),
        "logpdf": np.atleast_1d(logpdf).tolist(),
    }


golden = {
    "generator": "examples/scorer-ledoit-wolf/golden.py",
    "sklearn": sklearn.__version__,
    "test": test.tolist(),
    "cases": [
        case("tall", tall, LedoitWolf()),
        case("wide", wide, LedoitWolf()),
        case("fixed", tall, ShrunkCovariance(shrinkage=0.3)),
    ],
}

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden.json")
with open(out, "w") as f:
    json.dump(golden, f, indent=1)
    f.write("\n")
for c in golden["cases"]:
    print(f"{c['name']}: shrinkage {c['shrinkage']:.6f}, logpdf {min(c['logpdf']):.3f} .. {max(c['logpdf']):.3f}")
print(f"wrote {out} ({os.path.getsize(out)} bytes)")
