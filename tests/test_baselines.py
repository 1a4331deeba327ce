from __future__ import annotations

import numpy as np

from shopguard.baselines import gradient_boosting, isolation_forest


def data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.lognormal(1.0, 0.3, size=(1000, 5))
    x[-50:, 2] *= 40  # anomalies: one feature far off
    labels = np.full(len(x), np.nan)
    labels[:300] = 0
    labels[-50:-10] = 1
    return x, labels


def test_isolation_forest_ranks_the_outliers_near_the_top():
    x, _ = data()
    scores = isolation_forest(x, x)  # unsupervised: fitted on everyone, anomalies included
    assert set(np.argsort(-scores)[:100]) >= set(range(950, 1000))  # all 50 within the top 10%


def test_gradient_boosting_learns_from_labels_and_declines_without_enough():
    x, labels = data()
    scores = gradient_boosting(x, labels, x, unlabelled_sample=300)
    assert scores[-10:].min() > np.quantile(scores[:950], 0.99)  # the unlabelled anomalies too
    few = labels.copy()
    few[-50:-14] = np.nan
    assert gradient_boosting(x, few, x, unlabelled_sample=300) is None
