"""bench/external.py, the documented check of the unsupervised scorer on data nobody here made, runs on any
folder of .npz files and writes the JSON other teams compare with."""

from __future__ import annotations

import json

import numpy as np
import pytest
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


def test_a_setting_given_with_set_is_the_one_the_model_is_trained_with_and_is_recorded(tmp_path):
    bench = external()
    x = np.random.default_rng(1).normal(size=(200, 4))
    x[:5] += 6.0
    quick = ["model.epochs=5"]
    one = bench.shopguard_with(quick)(x, None, x, 0)
    mean_of_two = bench.shopguard_with([*quick, "model.trainings=2"])(x, None, x, 0)
    # model.trainings=2 trained a second model and averaged it in: other scores, the same five on top
    assert not np.allclose(one, mean_of_two, rtol=1e-3)
    assert set(np.argsort(-one)[:5]) == set(np.argsort(-mean_of_two)[:5]) == set(range(5))

    np.savez(tmp_path / "set.npz", X=x, y=np.r_[np.ones(5), np.zeros(195)])
    out = tmp_path / "figures.json"
    bench.main(["--data-dir", str(tmp_path), "--json", str(out), "--seeds", "1", "--detectors", "shopguard",
                "--set", "model.epochs=3"])  # fmt: skip
    assert json.loads(out.read_text())["settings"] == ["model.epochs=3"]


def test_a_setting_the_model_refuses_stops_the_bench_before_any_data_set_is_read(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        external().main(["--data-dir", str(tmp_path / "none"), "--set", "model.trainings=0"])
    assert stopped.value.code == 2
    assert "model.trainings: Input should be greater than 0" in capsys.readouterr().err


def test_the_labelled_protocol_labels_a_share_of_the_training_anomalies_and_as_many_normal_rows():
    bench = external()
    y = np.r_[np.ones(60), np.zeros(940)].astype(int)
    train, labels = bench.labelled_split(y, 0.5, seed=0)
    assert train.sum() == 700 and y[train].sum() == 42  # stratified 70/30
    assert (
        (labels == 1).sum() == (labels == 0).sum() == 21
    )  # half of the 42 training anomalies, as many normal
    assert (y[train][labels == 1] == 1).all() and (y[train][labels == 0] == 0).all()
    assert (bench.labelled_split(y, 0.01, seed=0)[1] == 1).sum() == bench.MIN_LABELLED
    assert bench.labelled_split(np.r_[np.ones(12), np.zeros(300)].astype(int), 0.5, seed=0) is None


def test_the_labelled_protocol_trains_the_modes_that_learn_from_verdicts_and_measures_on_held_out_rows(
    tmp_path, capsys
):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(600, 5))
    x[:60, 0] += 4.0  # anomalies off the cloud along one feature
    np.savez(tmp_path / "shifted.npz", X=x, y=np.r_[np.ones(60), np.zeros(540)])
    np.savez(tmp_path / "few.npz", X=x[50:], y=np.r_[np.ones(10), np.zeros(540)])  # 7 to train on: left out
    out = tmp_path / "figures.json"
    external().main(["--data-dir", str(tmp_path), "--json", str(out), "--seeds", "1", "--labelled", "0.5",
                     "--detectors", "shopguard_semi,gbt", "--set", "model.epochs=5"])  # fmt: skip
    figures = json.loads(out.read_text())
    assert figures["labelled"] == 0.5 and set(figures["datasets"]) == {"shifted"}
    assert figures["datasets"]["shifted"]["gbt"]["roc_auc"] > 0.9
    assert figures["datasets"]["shifted"]["shopguard_semi"]["roc_auc"] > 0.9
    assert "few" in capsys.readouterr().err

    with pytest.raises(SystemExit) as refused:  # a detector that needs labels, without any
        external().main(["--data-dir", str(tmp_path), "--detectors", "shopguard,gbt"])
    assert refused.value.code == 2 and "['gbt'] learn from labels" in capsys.readouterr().err
