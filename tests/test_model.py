from __future__ import annotations

import json

import numpy as np
import pytest

from shopguard.model import (
    TrainingParams,
    batch_scores,
    choose_thresholds,
    percentile_of,
    reasons,
    train,
    validation_mask,
)
from shopguard.model.ensemble import LEVELS, split_output
from shopguard.model.fitting import predict
from shopguard.registry import (
    ModelIntegrityError,
    ModelNotFoundError,
    keras_model_from_bytes,
    list_versions,
    load_model,
    save_model,
)
from shopguard.scoring import ScoringPlan

NAMES = [f"f{i}" for i in range(6)]


def data(n=400, seed=0):
    """Normal users share one pattern (f1 = 2 f0); the last five rows break it in f3."""
    rng = np.random.default_rng(seed)
    x = rng.lognormal(1.0, 0.3, size=(n, 6))
    x[:, 1] = 2 * x[:, 0]
    x[-5:, 3] = 500.0
    users = [f"u{i}" for i in range(n)]
    labels = np.full(n, np.nan)
    labels[:100] = 0
    labels[-5:] = 1
    labels[-20:-10] = 1
    return x.astype(np.float32), users, labels


FAST = TrainingParams(epochs=15, batch_size=64, seed=1)


@pytest.fixture(scope="module")
def autoencoder():
    x, users, _ = data()
    return train(x, users, NAMES, FAST), x


def test_autoencoder_ranks_rows_that_break_the_pattern_highest(autoencoder):
    trained, x = autoencoder
    scores, explanation = batch_scores(trained.model, "autoencoder", x)
    assert explanation.weight.shape == x.shape
    assert set(np.argsort(-scores)[:5]) == set(range(len(x) - 5, len(x)))


def test_thresholds_are_exact_quantiles_of_the_training_scores(autoencoder):
    trained, x = autoencoder
    scores, _ = batch_scores(trained.model, "autoencoder", x)
    assert trained.thresholds["alert"] == pytest.approx(np.quantile(scores, 0.99), rel=1e-5)
    assert trained.thresholds["block"] == pytest.approx(np.quantile(scores, 0.999), rel=1e-5)
    assert percentile_of(np.array([trained.thresholds["alert"]]), trained.reference_quantiles)[
        0
    ] == pytest.approx(99, abs=0.1)


def test_several_batches_per_call_into_keras_train_the_same_model(autoencoder):
    """model.steps_per_execution only saves Python round trips: one batch per call learns the same weights."""
    trained, x = autoencoder
    assert FAST.steps_per_execution > 1
    one_by_one = train(
        x, [f"u{i}" for i in range(len(x))], NAMES, FAST.model_copy(update={"steps_per_execution": 1})
    )
    np.testing.assert_allclose(
        batch_scores(one_by_one.model, "autoencoder", x)[0],
        batch_scores(trained.model, "autoencoder", x)[0],
        rtol=1e-5,
    )
    for level in ("alert", "block"):
        assert one_by_one.thresholds[level] == pytest.approx(trained.thresholds[level], rel=1e-5)


def test_reasons_name_the_feature_that_broke_the_pattern(autoencoder):
    trained, x = autoencoder
    scores, explanation = batch_scores(trained.model, "autoencoder", x[-5:])
    why = reasons(
        trained.model, "autoencoder", x[-5:], scores, explanation, NAMES, trained.reference_values, 2
    )
    assert all(r[0] == "f3 high" for r in why)


def test_the_rank_and_log_transforms_live_inside_the_model(autoencoder):
    trained, x = autoencoder
    cdf = trained.model.get_layer("empirical_cdf")  # raw features in, tail probabilities out
    median = np.asarray(cdf.knots)[list(LEVELS).index(0.5)]
    assert np.allclose(median, np.median(x, axis=0), rtol=0.05)
    assert "EmpiricalCDF" in trained.normalisation["tail_score"]
    assert trained.normalisation["inside_model"] == "SignedLog1p -> Normalization -> Clip(10)"
    inputs = [layer for layer in trained.model.layers if not layer.name.startswith("features")]
    assert {"empirical_cdf", "signed_log1p", "normalisation"} <= {layer.name for layer in inputs}


def test_validation_split_is_by_user_and_stable():
    users = [f"u{i}" for i in range(1000)] * 2  # each user in two snapshots
    mask = validation_mask(users, 0.2)
    assert (mask[:1000] == mask[1000:]).all()
    assert 0.15 < mask.mean() < 0.25


def test_classifier_learns_from_labels_and_reports_label_metrics():
    x, users, labels = data()
    labels[-20:-10] = np.nan
    trained = train(
        x, users, NAMES, TrainingParams(mode="classifier", epochs=30, batch_size=32, seed=1), labels=labels
    )
    scores, _ = batch_scores(trained.model, "classifier", x)
    assert scores[-5:].min() > np.median(scores[:100])
    why = reasons(trained.model, "classifier", x[-1:], scores[-1:], None, NAMES, trained.reference_values, 1)
    assert why == [["f3 high"]]


def test_classifier_without_labels_is_refused():
    x, users, _ = data()
    with pytest.raises(ValueError, match="needs labels"):
        train(x, users, NAMES, TrainingParams(mode="classifier"), labels=np.full(len(x), np.nan))


def test_saved_model_reloads_in_safe_mode_and_scores_the_same(autoencoder, tmp_path):
    trained, x = autoencoder
    save_model(trained.model, {"mode": "autoencoder"}, str(tmp_path), "v1")
    stored = load_model(str(tmp_path))
    assert stored.version == "v1" and list_versions(str(tmp_path)) == ["v1"]
    assert "keras" in stored.metadata.libraries
    reloaded = keras_model_from_bytes(stored.model_bytes)
    assert np.allclose(
        batch_scores(reloaded, "autoencoder", x)[0], batch_scores(trained.model, "autoencoder", x)[0]
    )


def test_the_mean_of_several_trainings_is_one_saved_model_that_scores_their_mean(autoencoder, tmp_path):
    """model.trainings: the first training is the single one, seed for seed; the model scores the mean of
    the trainings' scores, its thresholds are chosen on that mean, and it saves and reloads as one model."""
    single, x = autoencoder
    users = data()[1]
    averaged = train(x, users, NAMES, FAST.model_copy(update={"trainings": 2}))
    scores, explanation = batch_scores(averaged.model, "autoencoder", x)
    each = [split_output(predict(averaged.model.get_layer(f"training_{k}"), x)[0])[0] for k in range(2)]

    assert np.allclose(each[0], batch_scores(single.model, "autoencoder", x)[0], atol=1e-4)
    assert not np.allclose(each[0], each[1], atol=1e-3)  # another seed, another model
    assert np.allclose(scores, (each[0] + each[1]) / 2, atol=1e-5)
    assert explanation.weight.shape == x.shape
    assert averaged.thresholds["alert"] == pytest.approx(np.quantile(scores, 0.99), rel=1e-5)
    assert averaged.normalisation["mean_of_trainings"] == 2
    assert averaged.training["params"]["trainings"] == 2
    save_model(averaged.model, {"mode": "autoencoder"}, str(tmp_path), "v1")
    reloaded = keras_model_from_bytes(load_model(str(tmp_path)).model_bytes)
    assert np.allclose(batch_scores(reloaded, "autoencoder", x)[0], scores, atol=1e-5)


def test_a_tampered_model_file_is_refused(autoencoder, tmp_path):
    trained, _ = autoencoder
    path = save_model(trained.model, {"mode": "autoencoder"}, str(tmp_path), "v1")
    with open(f"{path}/model.keras", "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(ModelIntegrityError, match="SHA-256"):
        load_model(str(tmp_path))


def test_metadata_of_an_older_layout_loads_and_of_a_newer_one_is_refused_with_its_version(
    autoencoder, tmp_path
):
    trained, _ = autoencoder
    save_model(trained.model, {"mode": "autoencoder"}, str(tmp_path), "v1")
    path = tmp_path / "v1" / "metadata.json"
    meta = json.loads(path.read_text())
    assert meta["schema_version"] == 1
    del meta["schema_version"]  # as written before the field existed
    path.write_text(json.dumps(meta))
    assert load_model(str(tmp_path)).metadata.schema_version == 1
    path.write_text(json.dumps({**meta, "schema_version": 2}))
    with pytest.raises(ModelNotFoundError, match="schema version 2 is newer than this shopguard reads"):
        load_model(str(tmp_path))


def test_a_model_folder_without_readable_metadata_is_refused_by_name_never_skipped(autoencoder, tmp_path):
    trained, _ = autoencoder
    save_model(trained.model, {"mode": "autoencoder"}, str(tmp_path), "v1")
    save_model(trained.model, {"mode": "autoencoder"}, str(tmp_path), "v2")
    meta = json.loads((tmp_path / "v1" / "metadata.json").read_text())
    assert meta["model_version"] == "v1" and len(meta["model_sha256"]) == 64
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # saved whole, then moved in place
    (tmp_path / "v2" / "metadata.json").unlink()  # model.keras kept, metadata deleted
    for pinned in (None, "v2"):
        with pytest.raises(ModelNotFoundError, match=rf"{tmp_path}/v2 has no metadata.json"):
            load_model(str(tmp_path), pinned)
    (tmp_path / "v2" / "metadata.json").write_text("{not json")
    with pytest.raises(ModelNotFoundError, match="metadata.json is unreadable"):
        load_model(str(tmp_path))
    assert load_model(str(tmp_path), "v1").version == "v1"  # only when asked for
    with pytest.raises(ModelNotFoundError, match="no trained model"):
        load_model(str(tmp_path / "empty"))


def test_a_model_with_a_lambda_layer_is_refused_by_safe_mode(tmp_path):
    import keras

    inputs = keras.Input(shape=(3,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(inputs))
    model.save(tmp_path / "evil.keras")
    with pytest.raises(ValueError, match="(?i)lambda"):
        keras_model_from_bytes((tmp_path / "evil.keras").read_bytes())


def test_semi_supervised_learns_from_a_few_labels_which_deviation_matters():
    """Two kinds of rare deviation; only one is anomalous, and a handful of labels say which."""
    rng = np.random.default_rng(5)
    x = rng.lognormal(1.0, 0.3, size=(2000, 6)).astype(np.float32)
    x[:, 1] = 2 * x[:, 0]
    harmless, harmful = np.arange(1900, 1950), np.arange(1950, 2000)
    x[harmless, 4] *= 30  # e.g. a legitimate bulk buyer
    x[harmful, 5] *= 30
    labels = np.full(len(x), np.nan)
    labels[:200] = 0
    labels[harmless[:10]] = 0
    labels[harmful[:10]] = 1
    users = [f"u{i}" for i in range(len(x))]
    params = TrainingParams(  # a weak penalty: this toy has 10 anomalous labels and a single signal
        mode="semi_supervised", epochs=15, batch_size=128, seed=1, unlabelled_sample=500, semi_c=100.0
    )
    trained = train(x, users, NAMES, params, labels=labels)
    scores, explanation = batch_scores(trained.model, "semi_supervised", x)
    assert np.median(scores[harmful[10:]]) > np.quantile(scores[harmless[10:]], 0.9)
    why = reasons(trained.model, "semi_supervised", x[harmful], scores[harmful], explanation and
                  type(explanation)(explanation.weight[harmful]), NAMES,
                  trained.reference_values, 1)  # fmt: skip
    assert np.mean([w == ["f5 high"] for w in why]) > 0.8


def test_semi_supervised_without_enough_labels_is_refused():
    x, users, labels = data()
    labels[:] = np.nan
    labels[-2:] = 1
    with pytest.raises(ValueError, match="at least 5 anomalous and 5 normal"):
        train(x, users, NAMES, TrainingParams(mode="semi_supervised"), labels=labels)


def test_thresholds_to_a_target_precision_on_labelled_validation_users():
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 1, 1000)
    val_scores = np.r_[rng.uniform(0, 0.6, 80), rng.uniform(0.5, 1.0, 20)]  # anomalies score higher
    val_labels = np.r_[np.zeros(80), np.ones(20)]
    params = TrainingParams(threshold_method="precision", alert_precision=0.8, block_precision=1.0)
    chosen = choose_thresholds(scores, val_scores, val_labels, params)
    flagged = val_scores >= chosen["alert"]
    assert chosen["method"] == "precision" and val_labels[flagged].mean() >= 0.8
    assert val_labels[val_scores >= chosen["block"]].mean() == 1.0 and chosen["block"] >= chosen["alert"]
    assert chosen["expected_alert_share"] == pytest.approx((scores >= chosen["alert"]).mean())
    too_few = choose_thresholds(scores, val_scores[:30], val_labels[:30], params)
    assert too_few["method"].startswith("budget") and too_few["alert"] == pytest.approx(
        np.quantile(scores, 0.99)
    )


def test_auto_mode_learns_from_labels_when_there_are_enough_and_says_why():
    x, users, labels = data()
    many = train(
        x, users, NAMES, FAST.model_copy(update={"mode": "auto", "auto_min_labels": 5}), labels=labels
    )
    assert many.mode == "semi_supervised" and "auto_min_labels=5" in many.training["mode_reason"]
    few = train(
        x, users, NAMES, FAST.model_copy(update={"mode": "auto", "auto_min_labels": 50}), labels=labels
    )
    assert (
        few.mode == "autoencoder" and "needs model.auto_min_labels=50 of each" in few.training["mode_reason"]
    )


def test_a_model_that_barely_ranks_its_validation_users_is_warned_about(caplog):
    x, users, _ = data()
    coin = np.random.default_rng(3).integers(0, 2, size=len(x)).astype(float)  # labels unrelated to x
    params = TrainingParams(mode="classifier", epochs=15, batch_size=32, seed=1, min_validation_roc_auc=0.9)
    trained = train(x, users, NAMES, params, labels=coin)
    (warning,) = trained.training["warnings"]
    assert "below model.min_validation_roc_auc=0.9" in warning and warning in caplog.text


def test_the_earlier_log_scaled_autoencoder_can_still_be_chosen(autoencoder):
    x, users, _ = data()
    earlier = train(x, users, NAMES, FAST.model_copy(update={"unsupervised": "log_autoencoder"}))
    assert [layer.name for layer in earlier.model.layers[1:4]] == ["signed_log1p", "normalisation", "clip"]
    scores, explanation = batch_scores(earlier.model, "autoencoder", x)
    assert set(np.argsort(-scores)[:5]) == set(range(len(x) - 5, len(x)))
    assert explanation.weight.shape == x.shape


def _with_a_constant_and_a_correlated_pair(n=1500, seed=4):
    """f5 is 0 for every user (a platform without reviews); f1 = 2 f0 for normal users, so the model's
    residuals on f0 and f1 point either way while the values themselves are plainly above or below the
    population; the last 30 rows are anomalous in f3 and labelled, with 200 normal labels."""
    rng = np.random.default_rng(seed)
    x = rng.lognormal(1.0, 0.5, size=(n, 6)).astype(np.float32)
    x[:, 1] = 2 * x[:, 0] * rng.lognormal(0.0, 0.05, size=n)
    x[:, 5] = 0.0
    x[-30:, 3] *= 20
    labels = np.full(n, np.nan)
    labels[:200] = 0
    labels[-30:] = 1
    return x, [f"u{i}" for i in range(n)], labels


@pytest.mark.parametrize("mode", ["autoencoder", "semi_supervised", "classifier"])
def test_a_reasons_direction_says_how_the_user_compares_with_the_training_population(mode):
    x, users, labels = _with_a_constant_and_a_correlated_pair()
    params = TrainingParams(mode=mode, epochs=10, batch_size=64, seed=1, unlabelled_sample=500, semi_c=10.0)
    trained = train(x, users, NAMES, params, labels=labels)
    scores, explanation = batch_scores(trained.model, mode, x)
    why = reasons(trained.model, mode, x, scores, explanation, NAMES, trained.reference_values, 3,
                  trained.constant_features)  # fmt: skip
    median = np.median(x, axis=0)
    named = [(i, reason.split()) for i, row in enumerate(why) for reason in row]
    assert len(named) > len(x)  # most users get several reasons
    wrong = [(i, f, d) for i, (f, d) in named
             if (d == "high") != (x[i, NAMES.index(f)] > median[NAMES.index(f)])]  # fmt: skip
    assert wrong == []
    assert all(x[i, NAMES.index(f)] != median[NAMES.index(f)] for i, (f, _) in named)


@pytest.mark.parametrize("mode", ["autoencoder", "semi_supervised", "classifier"])
def test_a_feature_that_did_not_vary_among_the_training_users_is_never_a_reason(mode, tmp_path):
    x, users, labels = _with_a_constant_and_a_correlated_pair()
    params = TrainingParams(mode=mode, epochs=10, batch_size=64, seed=1, unlabelled_sample=500, semi_c=10.0)
    trained = train(x, users, NAMES, params, labels=labels)
    assert trained.constant_features == ["f5"]
    today = x.copy()
    today[:100, 5] = 3.0  # reviews arrive: still nothing the model learnt anything about
    scores, explanation = batch_scores(trained.model, mode, today)
    why = reasons(trained.model, mode, today, scores, explanation, NAMES, trained.reference_values, 6,
                  trained.constant_features)  # fmt: skip
    assert not any(r.startswith("f5 ") for row in why for r in row)
    # the scoring path takes them from the stored metadata
    save_model(trained.model, {"mode": mode, "feature_names": NAMES, "constant_features": ["f5"],
                               "thresholds": trained.thresholds}, str(tmp_path), "v1")  # fmt: skip
    stored = load_model(str(tmp_path))
    assert ScoringPlan.from_metadata(stored.model_bytes, stored.metadata).constant_features == {"f5"}
