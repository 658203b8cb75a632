"""scikit-learn side of bench/scorers.mjs (spawned by it once per task; not meant to be run alone).

Usage: scorers_sklearn.py SPEC.json TASK   (TASK: gaussian | gmm | knn)
SPEC lists raw little-endian float64 files and their shapes. Prints one JSON object: the wall and CPU seconds of each
repeat (after a warm-up) and a few outputs to cross-check the JavaScript results.
"""

import json
import sys
import time
import warnings

import numpy as np
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import NearestNeighbors


def load(entry):
    return np.fromfile(entry["path"], dtype="<f8").reshape(entry["shape"])


def timed(fn, repeats):
    fn()  # warm-up: first-call allocations, thread pool start
    wall, cpu = [], []
    out = None
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return {"wall": wall, "cpu": cpu}, out


def gaussian(spec):
    X = load(spec["gaussian"])
    times, gm = timed(lambda: GaussianMixture(1, covariance_type="full", reg_covar=1e-6).fit(X), spec["repeats"])
    return {**times, "scores_head": gm.score_samples(X[:20]).tolist()}


def gmm(spec):
    G = load(spec["gmm"])
    g = spec["gmm"]
    fit = lambda: GaussianMixture(
        g["components"], covariance_type="full", reg_covar=1e-6, init_params="k-means++", max_iter=g["max_iter"], tol=g["tol"], random_state=0
    ).fit(G)
    times, model = timed(fit, spec["repeats"])
    return {**times, "n_iter": int(model.n_iter_), "mean_log_likelihood": float(model.score(G))}


def knn(spec):
    T = load(spec["knn_train"])
    Q = load(spec["knn_queries"])
    k = spec["knn_k"]

    def run():
        dist, _ = NearestNeighbors(n_neighbors=k).fit(T).kneighbors(Q)
        return -dist.mean(axis=1)

    times, scores = timed(run, spec["repeats"])
    return {**times, "scores_head": scores[:20].tolist()}


def main():
    spec = json.load(open(sys.argv[1]))
    warnings.simplefilter("ignore", ConvergenceWarning)
    result = {"gaussian": gaussian, "gmm": gmm, "knn": knn}[sys.argv[2]](spec)
    json.dump({"sklearn": sklearn.__version__, "numpy": np.__version__, **result}, sys.stdout)


if __name__ == "__main__":
    main()
