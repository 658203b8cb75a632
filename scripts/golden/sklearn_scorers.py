"""Golden outputs of scikit-learn for the density scorers (scorer-gaussian, scorer-knn, scorer-gmm).

Rerun (deterministic, fixed seeds; needs Debian's Python with scikit-learn 1.2):

    OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 scripts/golden/sklearn_scorers.py

The committed files were written with OpenBLAS's SkylakeX kernels; other kernels change the last bits of the
generated data (about 1e-15), and so every value, by far less than the tests' tolerances.

Writes test/golden/scorers/{gaussian,knn,gmm}.json. Every array is a nested list of float64 values written with
Python's repr, so the JSON round-trips them exactly. The tests (test/scorer-*.test.ts) compare against these files
and never run Python.
"""

import json
import os
import sys

import numpy as np
import sklearn
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import NearestNeighbors

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "test", "golden", "scorers")
REG = 1e-6


def correlated(rng, n, d, spectrum, offset):
    """Gaussian rows with covariance R diag(spectrum) R^T for a random rotation R, shifted by `offset`."""
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return rng.standard_normal((n, d)) * np.sqrt(spectrum) @ q.T + offset


def gaussian_scores(train, test):
    gm = GaussianMixture(1, covariance_type="full", reg_covar=REG).fit(train)
    return gm.score_samples(test)


def smallest_k(explained_variance, fraction):
    """The smallest k whose cumulative explained-variance ratio is >= fraction."""
    ratio = np.cumsum(explained_variance) / explained_variance.sum()
    return int(np.argmax(ratio >= fraction) + 1)


def write(name, payload):
    payload = {"generator": "scripts/golden/sklearn_scorers.py", "sklearn": sklearn.__version__, "numpy": np.__version__, **payload}
    path = os.path.join(OUT, name)
    with open(path, "w") as f:
        json.dump(payload, f, separators=(",", ":"))
    print(f"wrote {os.path.relpath(path)} ({os.path.getsize(path) // 1024} KiB)", file=sys.stderr)


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240607)
    d = 10
    spectrum = np.array([6.0, 4.0, 2.5, 1.5, 1.0, 0.6, 0.3, 0.15, 0.08, 0.04])
    offset = rng.uniform(-3, 3, d)
    train = correlated(rng, 200, d, spectrum, offset)
    # Test rows: in-distribution, plus a few far outliers that give large negative scores.
    test = correlated(rng, 50, d, spectrum, offset)
    test[:5] += rng.standard_normal((5, d)) * 4

    # Fewer rows than columns: a rank-deficient covariance that only the regularisation makes invertible.
    few = train[:8]
    # A constant column: zero variance in one direction.
    const_train = train.copy()
    const_train[:, 3] = 1.25
    const_test = test.copy()
    const_test[:, 3] = 1.25
    const_test[0, 3] = 1.5  # one test row off the constant: a huge (but finite) penalty

    # Whitening: correlated data, k chosen by the explained-variance rule, then PCA(k, whiten=True) + Gaussian.
    fraction = 0.9
    pca_full = PCA(svd_solver="full").fit(train)
    k = smallest_k(pca_full.explained_variance_, fraction)
    pca = PCA(k, whiten=True, svd_solver="full").fit(train)
    whitened_scores = gaussian_scores(pca.transform(train), pca.transform(test))
    # All the variance of the constant-column data: the zero-variance axis is the one component left out.
    const_k = d - 1
    const_pca = PCA(const_k, whiten=True, svd_solver="full").fit(const_train)
    const_whitened_scores = gaussian_scores(const_pca.transform(const_train), const_pca.transform(const_test))

    write(
        "gaussian.json",
        {
            "reg_covar": REG,
            "train": train.tolist(),
            "test": test.tolist(),
            "scores": gaussian_scores(train, test).tolist(),
            "train_scores": gaussian_scores(train, train).tolist(),
            "few_rows": {"train": few.tolist(), "scores": gaussian_scores(few, test).tolist()},
            "constant_column": {
                "train": const_train.tolist(),
                "test": const_test.tolist(),
                "column": 3,
                "scores": gaussian_scores(const_train, const_test).tolist(),
                "whitened_all_variance": {"components": const_k, "scores": const_whitened_scores.tolist()},
            },
            "whitened": {
                "variance_fraction": fraction,
                "components": k,
                "explained_variance": pca.explained_variance_.tolist(),
                "scores": whitened_scores.tolist(),
            },
        },
    )

    knn = {"train": train.tolist(), "test": test.tolist()}
    for n_neighbors in (2, 5):
        dist, _ = NearestNeighbors(n_neighbors=n_neighbors).fit(train).kneighbors(test)
        knn[f"k{n_neighbors}"] = {"mean_distance": dist.mean(axis=1).tolist(), "distances": dist.tolist()}
    write("knn.json", knn)

    # Three clusters in 5 dimensions, for the mixture.
    gd = 5
    # Overlapping clusters: EM is still moving after max_iter, so the test follows the exact iteration, not only the fixed point.
    centres = np.array([[0.0] * gd, [2.0, 2.0, 0.0, 0.0, 0.0], [0.0, -1.5, 2.5, 0.5, 0.0]])
    sizes = [120, 100, 80]
    parts = [correlated(rng, s, gd, rng.uniform(0.3, 2.0, gd), c) for s, c in zip(sizes, centres)]
    gmm_train = np.concatenate(parts)
    rng.shuffle(gmm_train)
    gmm_test = np.concatenate([correlated(rng, 20, gd, np.ones(gd), c) for c in centres] + [rng.uniform(-8, 8, (10, gd))])

    means_init = centres + rng.standard_normal(centres.shape) * 0.8
    weights_init = np.array([0.3, 0.3, 0.4])
    precisions_init = np.stack([np.eye(gd) * s for s in (0.5, 1.0, 2.0)])
    max_iter = 10
    tol = 1e-12
    gm = GaussianMixture(
        3,
        covariance_type="full",
        reg_covar=REG,
        means_init=means_init,
        weights_init=weights_init,
        precisions_init=precisions_init,
        max_iter=max_iter,
        tol=tol,
    )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter is deliberately reached before convergence
        gm.fit(gmm_train)

    n_init = 3
    restarts = GaussianMixture(3, covariance_type="full", reg_covar=REG, init_params="k-means++", n_init=n_init, random_state=0).fit(gmm_train)
    # How far sklearn's own best-of-3 lands from seed to seed, with the right number of components and with one too
    # few: the test's tolerance must admit the first and refuse the second.
    by_seed = {
        str(k): [
            float(GaussianMixture(k, covariance_type="full", reg_covar=REG, init_params="k-means++", n_init=n_init, random_state=seed).fit(gmm_train).score(gmm_train))
            for seed in range(10)
        ]
        for k in (2, 3)
    }

    # Fewer rows than columns, with a constant column, from a given start: EM must follow sklearn there too.
    few_d = 12
    few_train = np.concatenate([rng.standard_normal((5, few_d)), rng.standard_normal((4, few_d)) + 3.0])
    few_train[:, 5] = -2.0
    few_test = np.concatenate([rng.standard_normal((3, few_d)), few_train[:2] + 0.1])
    few_init = {
        "means": few_train[[0, 5]].tolist(),
        "weights": [0.5, 0.5],
        "precisions": np.stack([np.eye(few_d), np.eye(few_d)]).tolist(),
    }
    few_gm = GaussianMixture(
        2,
        covariance_type="full",
        reg_covar=REG,
        means_init=np.array(few_init["means"]),
        weights_init=np.array(few_init["weights"]),
        precisions_init=np.array(few_init["precisions"]),
        max_iter=100,
        tol=1e-10,
    ).fit(few_train)
    write(
        "gmm.json",
        {
            "reg_covar": REG,
            "train": gmm_train.tolist(),
            "test": gmm_test.tolist(),
            "given_init": {
                "means": means_init.tolist(),
                "weights": weights_init.tolist(),
                "precisions": precisions_init.tolist(),
                "max_iter": max_iter,
                "tol": tol,
                "n_iter": int(gm.n_iter_),
                "converged": bool(gm.converged_),
                "lower_bound": float(gm.lower_bound_),
                "weights_fitted": gm.weights_.tolist(),
                "means_fitted": gm.means_.tolist(),
                "scores": gm.score_samples(gmm_test).tolist(),
            },
            "kmeanspp": {
                "n_init": n_init,
                "mean_train_log_likelihood": float(restarts.score(gmm_train)),
                "lower_bound": float(restarts.lower_bound_),
                "mean_train_log_likelihood_by_seed": by_seed,
            },
            "few_rows_constant_column": {
                "train": few_train.tolist(),
                "test": few_test.tolist(),
                "init": few_init,
                "max_iter": 100,
                "tol": 1e-10,
                "converged": bool(few_gm.converged_),
                "n_iter": int(few_gm.n_iter_),
                "scores": few_gm.score_samples(few_test).tolist(),
                "train_scores": few_gm.score_samples(few_train).tolist(),
            },
        },
    )


if __name__ == "__main__":
    main()
