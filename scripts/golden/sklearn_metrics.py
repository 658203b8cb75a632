"""Golden values for core/src/metrics: scikit-learn 1.2.1 roc_auc_score, average_precision_score and roc_curve.

Rerun (deterministic, fixed seeds) from the repository root with Debian's Python, which has scikit-learn 1.2.1:

    /usr/bin/python3 scripts/golden/sklearn_metrics.py

It writes test/golden/metrics/sklearn_metrics.json, read by test/metrics.test.ts. Scores are written with
Python's repr of float64, which JavaScript parses back to the identical double.
"""

import json
import os

import numpy as np
import sklearn
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "test", "golden", "metrics", "sklearn_metrics.json")


def curve_case(name, scores, positive):
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    fpr, tpr, thresholds = roc_curve(positive, scores, drop_intermediate=True)
    return {
        "name": name,
        "scores": [float(s) for s in scores],
        "positive": [bool(p) for p in positive],
        "auroc": float(roc_auc_score(positive, scores)),
        "averagePrecision": float(average_precision_score(positive, scores)),
        "roc": {
            "fpr": [float(v) for v in fpr],
            "tpr": [float(v) for v in tpr],
            "thresholds": [float(v) for v in thresholds],
        },
    }


def evaluate_case(name, normality, anomalous):
    """The pipeline's convention: AUROC with normal as positive scored by normality; AP and the ROC curve with
    anomalous as positive scored by minus normality."""
    normality = np.asarray(normality, dtype=np.float64)
    anomalous = np.asarray(anomalous, dtype=bool)
    fpr, tpr, thresholds = roc_curve(anomalous, -normality, drop_intermediate=True)
    return {
        "name": name,
        "normality": [float(s) for s in normality],
        "anomalous": [bool(a) for a in anomalous],
        "auroc": float(roc_auc_score(~anomalous, normality)),
        "averagePrecision": float(average_precision_score(anomalous, -normality)),
        "roc": {
            "fpr": [float(v) for v in fpr],
            "tpr": [float(v) for v in tpr],
            "thresholds": [float(v) for v in thresholds],
        },
    }


def main():
    rng = np.random.default_rng(20210617)
    cases = []
    # The example of sklearn's own documentation.
    cases.append(curve_case("sklearn-doc-example", [0.1, 0.4, 0.35, 0.8], [False, False, True, True]))
    cases.append(curve_case("perfect-separation", [0.9, 0.8, 0.7, 0.3, 0.2, 0.1], [True, True, True, False, False, False]))
    cases.append(curve_case("inverted-separation", [0.9, 0.8, 0.7, 0.3, 0.2, 0.1], [False, False, False, True, True, True]))
    cases.append(curve_case("single-positive-single-negative", [1.5, -2.0], [False, True]))
    n = 300
    cases.append(curve_case("heavy-ties", rng.integers(0, 4, n).astype(np.float64) * 0.25, rng.random(n) < 0.35))
    labels = rng.random(50) < 0.3
    labels[0], labels[1] = True, False
    cases.append(curve_case("all-equal-scores", np.full(50, 3.25), labels))
    ints = rng.integers(-20, 21, 400)
    cases.append(curve_case("integer-scores", ints.astype(np.float64), (ints + rng.normal(0, 12, 400)) > 4))
    # Ties between positives and negatives only at a few values, many distinct elsewhere.
    mixed = np.round(rng.normal(0, 1, 500), 1)
    cases.append(curve_case("rounded-normal-scores", mixed, rng.random(500) < 1 / (1 + np.exp(-2 * mixed))))
    y = rng.random(1000) < 0.2
    s = rng.normal(0, 1, 1000) + 1.2 * y
    cases.append(curve_case("random-1000", s, y))
    y2 = rng.random(1000) < 0.5
    cases.append(curve_case("random-1000-uninformative", rng.random(1000), y2))
    # Log-likelihood-like magnitudes, where rounding would show.
    y3 = rng.random(1000) < 0.1
    cases.append(curve_case("random-1000-large-magnitude", -1e4 + 50 * rng.standard_normal(1000) - 80 * y3, y3))

    anomalous = rng.random(600) < 0.25
    normality = -300 + 5 * rng.standard_normal(600) - 6 * anomalous
    normality[:40] = np.round(normality[:40])
    evaluate = [evaluate_case("evaluate-600", normality, anomalous)]

    doc = {
        "generator": "scripts/golden/sklearn_metrics.py",
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "cases": cases,
        "evaluate": evaluate,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes, {len(cases)} curve cases)")


if __name__ == "__main__":
    main()
