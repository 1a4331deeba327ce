"""The isolation forest and nearest-neighbour detectors inside the unsupervised model."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import NearestNeighbors

from shopguard.model import TrainingParams, batch_scores, train
from shopguard.model.detectors import isolation_forest, nearest_neighbours
from shopguard.registry import save_model


def _blobs(n: int = 1500, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 5)).astype(np.float32)
    x[:15] += 5.0
    return x


def test_the_keras_isolation_forest_walks_the_same_paths_as_scikit_learn():
    x = _blobs()
    layer = isolation_forest(x, trees=40, seed=3)
    ours = np.asarray(layer(x)).ravel()  # -E[depth] / c(256)
    expected = IsolationForest(n_estimators=40, random_state=3).fit(x).score_samples(x)  # -2^(-E/c)
    assert np.allclose(-(2.0**ours), expected, atol=1e-6)


def test_a_reference_user_does_not_count_itself_among_its_neighbours():
    x = _blobs()
    layer = nearest_neighbours(x, k=5, reference_rows=500, seed=0)
    reference = np.asarray(layer.reference)
    in_reference = np.asarray(layer.reference) * np.asarray(layer.scale) + np.asarray(layer.centre)
    ours = np.asarray(layer(in_reference.astype(np.float32))).ravel()
    distances, _ = NearestNeighbors(n_neighbors=6).fit(reference).kneighbors(reference)
    assert np.allclose(ours, distances[:, 5], atol=1e-3)  # the 5th neighbour other than itself
    outside = np.asarray(layer(x)).ravel()
    centred = (x - np.asarray(layer.centre)) / np.asarray(layer.scale)
    distances, _ = NearestNeighbors(n_neighbors=6).fit(reference).kneighbors(centred)
    kth = np.where(distances[:, 0] < 0.03, distances[:, 5], distances[:, 4])
    assert np.allclose(outside, kth, atol=1e-3)


def test_a_user_ordinary_on_every_feature_but_far_from_everyone_ranks_high_only_with_the_detectors():
    """Two groups of users (f1 = f0 or f1 = -f0); one user sits between them: neither of its features is
    rare, so no per-feature tail sees it, but no other user is near it."""
    rng = np.random.default_rng(1)
    f0 = rng.uniform(-1, 1, 2000)
    sign = np.where(rng.random(2000) < 0.5, 1.0, -1.0)
    x = np.column_stack([f0, sign * f0 + rng.normal(0, 0.02, 2000), rng.normal(0, 1, 2000)])
    x = x.astype(np.float32)
    x[0, :2] = [0.8, 0.0]
    users, names = [f"u{i}" for i in range(len(x))], ["f0", "f1", "noise"]

    def share_above_the_odd_user(**detectors: int) -> float:
        trained = train(x, users, names, TrainingParams(epochs=5, seed=1, **detectors))
        scores, _ = batch_scores(trained.model, "autoencoder", x)
        return float((scores > scores[0]).mean())

    assert share_above_the_odd_user() < 0.08  # the default: both detectors fused in
    assert share_above_the_odd_user(isolation_trees=0, neighbours=0) > 0.2


def test_a_saved_model_with_the_detectors_scores_the_same_in_a_fresh_process(tmp_path):
    """Executors load the model in new Python workers: every layer must be registered by the import
    the registry does, not by training having run in the same process."""
    x = _blobs(600)
    trained = train(x, [f"u{i}" for i in range(len(x))], list("abcde"), TrainingParams(epochs=2, seed=1))
    save_model(trained.model, {"mode": "autoencoder"}, str(tmp_path), "v1")
    np.save(tmp_path / "x.npy", x)
    x_file, scores_file = str(tmp_path / "x.npy"), str(tmp_path / "scores.npy")
    script = (
        "import sys, numpy as np\n"
        "from shopguard.registry import keras_model_from_bytes, load_model\n"
        "from shopguard.model import batch_scores\n"
        f"model = keras_model_from_bytes(load_model({str(tmp_path)!r}).model_bytes)\n"
        f"np.save({scores_file!r}, batch_scores(model, 'autoencoder', np.load({x_file!r}))[0])\n"
    )
    subprocess.run(
        [sys.executable, "-c", script], check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    )
    expected, _ = batch_scores(trained.model, "autoencoder", x)
    assert np.allclose(np.load(scores_file), expected, rtol=1e-5)
