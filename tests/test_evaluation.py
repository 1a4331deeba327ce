from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shopguard.evaluation import (
    feature_of_reason,
    join_truth,
    never_trained_on,
    quality_metrics,
    ranking_summary,
    reason_signature_rate,
    top_share,
    weighted_like,
    with_unscored,
)
from shopguard.model import holdout_mask, validation_mask

SCORES = pd.DataFrame(
    {
        "user_id": [f"u{i}" for i in range(10)],
        "score": [0.9, 0.8, 0.1, 0.2, 0.3, 0.05, 0.4, 0.15, 0.25, 0.7],
        "is_anomaly": [True, True] + [False] * 7 + [True],
        "action": ["block", "alert"] + ["pass"] * 7 + ["alert"],
        "reasons": [["login_failures_1d high"], ["amount_max_7d high"]] + [[]] * 7 + [["events_1d high"]],
    }
)
TRUTH = pd.DataFrame(
    {
        "user_id": ["u0", "u1", "u2"],
        "anomaly_type": ["account_takeover", "account_takeover", "brushing"],
        "subtle": [False, False, True],
    }
)


def value(metrics, anomaly_type, metric):
    return metrics.set_index(["anomaly_type", "metric"]).loc[(anomaly_type, metric), "value"]


def test_quality_metrics_per_type_budget_and_threshold():
    metrics = quality_metrics(join_truth(SCORES, TRUTH), "m", budgets=(0.2,))
    assert value(metrics, "account_takeover", "roc_auc") == 1.0  # both above every normal user
    assert value(metrics, "brushing", "roc_auc") == pytest.approx(1 / 7)  # below 6 of the 7 normal users
    # the top 20% (2 users) are u0 and u1: both anomalous, 2 of the 3 anomalies
    assert value(metrics, "all", "precision@budget_0.2") == 1.0
    assert value(metrics, "all", "recall@budget_0.2") == pytest.approx(2 / 3)
    # alerts: u0, u1 and the normal u9
    assert value(metrics, "all", "precision@threshold_alert") == pytest.approx(2 / 3)
    assert value(metrics, "all", "recall@threshold_block") == pytest.approx(1 / 3)
    assert value(metrics, "subtle", "positives") == 1


def test_top_reasons_are_checked_against_the_signature_of_the_type():
    rates = reason_signature_rate(join_truth(SCORES, TRUTH), "m").set_index("anomaly_type")["value"]
    assert rates["account_takeover"] == 1.0  # login failures and the amount are takeover signatures
    assert "brushing" not in rates  # u2 has no reasons
    assert feature_of_reason("login_failure_rate_7d high") == "login_failure_rate"
    assert feature_of_reason("account_age_days low") == "account_age_days"


def test_ranking_summary_counts_known_anomalies_in_the_top_shares():
    many = pd.concat([SCORES, pd.DataFrame({"user_id": [f"n{i}" for i in range(90)], "score": 0.0})])
    summary = ranking_summary(many, TRUTH).set_index("anomaly_type")
    assert summary.loc["all", "known"] == 3 and summary.loc["all", "scored"] == 3
    assert summary.loc["account_takeover", "top_1%"] == 1 and summary.loc["account_takeover", "top_5%"] == 2
    assert summary.loc["brushing", "top_5%"] == 0 and summary.loc["account_takeover", "roc_auc"] == 1.0


def test_known_anomalies_without_a_score_count_as_misses():
    truth = pd.concat([TRUTH, pd.DataFrame({"user_id": ["gone1", "gone2"], "anomaly_type": "brushing"})])
    complete = join_truth(SCORES, TRUTH)
    frame = with_unscored(join_truth(SCORES, truth), truth, eligible=set(SCORES.user_id) | {"gone1"})
    assert frame.unscored.sum() == 1 and "gone2" not in set(frame.user_id)  # only eligible users
    missed = frame[frame.user_id == "gone1"].iloc[0]
    assert missed.score < SCORES.score.min() and not missed.is_anomaly and missed.action == "pass"
    assert value(quality_metrics(frame, "m"), "all", "roc_auc") < value(
        quality_metrics(complete, "m"), "all", "roc_auc"
    )


def test_users_never_trained_on_are_the_holdout_or_else_validation_users_and_newcomers():
    users = np.array([f"u{i}" for i in range(2000)], dtype=object)
    trained = set(users[:1000])
    fresh = never_trained_on(users, 0.0, 0.2, trained)
    assert fresh[1000:].all() and 0.15 < fresh[:1000].mean() < 0.25
    assert (fresh[:1000] == validation_mask(users[:1000], 0.2)).all()
    held_out = never_trained_on(users, 0.5, 0.2, trained)
    assert (held_out == holdout_mask(users, 0.5)).all()


def test_weighted_rows_count_as_that_many_users_in_every_metric():
    frame = join_truth(SCORES, TRUTH)
    weighted = frame.assign(weight=np.where(frame.anomaly_type.isna(), 3.0, 1.0))
    repeated = frame.loc[frame.index.repeat(weighted.weight.astype(int))].reset_index(drop=True)

    # 3 anomalies + 7 normal users x 3 = 24 users; a 20% budget is the top 5 either way
    pd.testing.assert_frame_equal(
        quality_metrics(weighted, "m", budgets=(0.2,)), quality_metrics(repeated, "m", budgets=(0.2,))
    )
    assert value(quality_metrics(weighted, "m"), "all", "positives") == 3


def test_the_top_share_with_unit_weights_is_pandas_first_rank():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 20, 500).astype(float)  # many ties
    for share in (0.001, 0.01, 0.05, 0.5):
        expected = pd.Series(scores).rank(ascending=False, method="first") <= max(1, round(share * 500))
        assert (top_share(scores, np.ones(500), share) == expected.to_numpy()).all()


def test_the_ranking_counts_weighted_rows_as_that_many_users():
    many = SCORES.assign(weight=np.where(SCORES.user_id.isin(TRUTH.user_id), 1.0, 3.0))
    repeated = many.loc[many.index.repeat(many.weight.astype(int))].drop(columns="weight")

    pd.testing.assert_frame_equal(ranking_summary(many, TRUTH), ranking_summary(repeated, TRUTH))


def test_a_heavy_row_at_the_budget_edge_is_inside():
    inside = top_share(np.array([0.9, 0.5, 0.1]), np.array([1.0, 50.0, 50.0]), 0.01)  # budget: 1 user
    assert inside.tolist() == [True, False, False]
    assert top_share(np.array([0.5, 0.9]), np.array([50.0, 50.0]), 0.01).tolist() == [False, True]


def test_a_baseline_on_a_smaller_sample_is_weighted_to_the_models_population():
    model = join_truth(SCORES, TRUTH).assign(
        weight=np.where(join_truth(SCORES, TRUTH).anomaly_type.isna(), 4.0, 1.0)
    )
    baseline = join_truth(SCORES.iloc[[0, 2, 5, 6]][["user_id", "score"]], TRUTH)  # 2 anomalies, 2 others

    weighted = weighted_like(baseline, model)

    anomalous = weighted.anomaly_type.notna()
    assert weighted.weight[anomalous].tolist() == [1.5, 1.5]  # 3 anomalies in the model's population
    assert weighted.weight[~anomalous].tolist() == [14.0, 14.0]  # 7 others x 4
