"""bench/external.py, the documented check of the unsupervised scorer on data nobody here made, runs on any
folder of .npz files and writes the JSON other teams compare with."""

from __future__ import annotations

import json

import numpy as np
from conftest import load_script


def external():
    return load_script("bench/external.py")


def test_the_external_benchmark_scores_every_detector_on_every_file_and_writes_json(tmp_path):
    rng = np.random.default_rng(0)
    for name, shift in (("far", 8.0), ("near", 3.0)):  # normal cloud, and a few points off it
        x = rng.normal(size=(300, 5))
        x[:12] += shift
        np.savez(tmp_path / f"{name}.npz", X=x, y=np.r_[np.ones(12), np.zeros(288)])
    out = tmp_path / "figures.json"
    external().main(["--data-dir", str(tmp_path), "--json", str(out), "--seeds", "1",
                     "--detectors", "shopguard,isolation_forest,ecod"])  # fmt: skip
    figures = json.loads(out.read_text())
    assert set(figures["datasets"]) == {"far", "near"}
    for per_detector in figures["datasets"].values():
        assert set(per_detector) == {"shopguard", "isolation_forest", "ecod"}
    assert figures["datasets"]["far"]["shopguard"]["roc_auc"] > 0.95  # points 8 sd away are found
    assert set(figures["mean"]["shopguard"]) >= {"roc_auc", "pr_auc", "mean_rank"}
