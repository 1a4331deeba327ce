from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from pyspark.sql import types as T

from shopguard import schemas
from shopguard.features import feature_fingerprint
from shopguard.model import TrainingParams, batch_scores, train
from shopguard.registry import load_model, save_model
from shopguard.scoring import (
    ModelMismatchError,
    ScoringPlan,
    check_features_match,
    score_users,
    warm_workers,
)

NAMES = ["logins_7d", "orders_7d", "amount_max_7d"]
SCHEMA = T.StructType(
    [T.StructField("user_id", T.StringType()), T.StructField("snapshot_date", T.DateType())]
    + [T.StructField(n, T.DoubleType()) for n in NAMES]
)
D = dt.date(2026, 11, 22)
AT = dt.datetime(2026, 11, 23, 3, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    rng = np.random.default_rng(3)
    x = rng.lognormal(1.0, 0.4, size=(300, 3)).astype(np.float32)
    trained = train(x, [f"u{i}" for i in range(300)], NAMES, TrainingParams(epochs=10, seed=2))
    root = str(tmp_path_factory.mktemp("models"))
    metadata = {
        "mode": trained.mode,
        "feature_names": NAMES,
        "feature_fingerprint": feature_fingerprint(SCHEMA),
        "thresholds": trained.thresholds,
        "reference_quantiles": trained.reference_quantiles,
        "reference_values": trained.reference_values,
    }
    save_model(trained.model, metadata, root, "v1")
    return load_model(root), x


def test_udf_scores_match_the_model_called_directly(spark, stored):
    model, x = stored
    rows = [(f"u{i}", D, *map(float, x[i])) for i in range(40)] + [("odd", D, 1e4, 0.0, 9e5)]
    features = spark.createDataFrame(rows, SCHEMA).repartition(3)
    plan = ScoringPlan.from_metadata(model.model_bytes, model.metadata)

    scored = score_users(features, plan, AT, D)
    out = {r.user_id: r for r in scored.collect()}

    assert scored.schema == schemas.SCORES
    from shopguard.registry import keras_model_from_bytes

    direct, _ = batch_scores(
        keras_model_from_bytes(model.model_bytes), "autoencoder", np.array([r[2:] for r in rows])
    )
    assert np.allclose([out[r[0]].score for r in rows], direct, rtol=1e-5)
    odd = out["odd"]
    assert odd.action == "block" and odd.is_anomaly and odd.score_percentile == pytest.approx(100.0)
    assert len(odd.reasons) == 3 and odd.reasons[0].endswith(("high", "low"))
    assert {r.model_version for r in out.values()} == {"v1"} and odd.scored_at == AT.replace(tzinfo=None)
    passing = [r for r in out.values() if r.score < plan.alert_threshold]
    assert passing and all(r.action == "pass" and not r.is_anomaly for r in passing)


def test_warmed_workers_are_the_ones_scoring_gets_with_the_model_loaded(spark, stored):
    model, _ = stored
    plan = ScoringPlan.from_metadata(model.model_bytes, model.metadata)
    tasks = spark.sparkContext.defaultParallelism
    warmed = warm_workers(spark.range(0, tasks, 1, tasks), plan, rows=64).collect()
    assert len(warmed) == tasks and all(r.seconds >= 0 for r in warmed)

    def probe(batches):
        import os

        import pandas as pd

        from shopguard.scoring import _WORKER_MODELS

        for _ in batches:
            pass
        yield pd.DataFrame({"pid": [os.getpid()], "loaded": [plan.model_sha256 in _WORKER_MODELS]})

    probed = spark.range(0, tasks, 1, tasks).mapInPandas(probe, "pid long, loaded boolean").collect()
    reused = {r.pid for r in probed} & {r.worker_pid for r in warmed}
    assert reused, "the pandas UDF ran in other Python workers than the warmed ones"
    assert all(r.loaded for r in probed if r.pid in reused)


def test_configured_thresholds_override_the_model(stored):
    model, _ = stored
    plan = ScoringPlan.from_metadata(
        model.model_bytes, model.metadata, alert_threshold=0.5, block_threshold=2.0
    )
    assert (plan.alert_threshold, plan.block_threshold) == (0.5, 2.0)
    with pytest.raises(ValueError, match="below the alert"):
        ScoringPlan.from_metadata(model.model_bytes, model.metadata, alert_threshold=3.0, block_threshold=2.0)


def test_a_model_trained_on_other_features_is_refused_with_the_difference(stored):
    model, _ = stored
    check_features_match(SCHEMA, model.metadata)  # the same features: fine
    changed = T.StructType(
        [f for f in SCHEMA.fields if f.name != "orders_7d"] + [T.StructField("new_7d", T.DoubleType())]
    )
    with pytest.raises(
        ModelMismatchError,
        match=r"missing from the table: \['orders_7d'\].*not known to the model: \['new_7d'\]",
    ):
        check_features_match(changed, model.metadata)
