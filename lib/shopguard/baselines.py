"""The obvious alternatives, fitted on the same features the model saw, to show the model is worth it:
scikit-learn's IsolationForest (unsupervised) and HistGradientBoostingClassifier (where labels exist)."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest

from shopguard.config import ModelSettings
from shopguard.model.data import labelled_and_presumed_normal  # NumPy only: evaluating needs no Keras

MIN_POSITIVES = 5


def _logged(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def isolation_forest(x_train: np.ndarray, x_eval: np.ndarray, seed: int = 0) -> np.ndarray:
    """Anomaly scores (higher = more anomalous) of an IsolationForest fitted on the training rows."""
    forest = IsolationForest(n_estimators=200, random_state=seed, n_jobs=-1).fit(_logged(x_train))
    return -forest.score_samples(_logged(x_eval))


def gradient_boosting(
    x_train: np.ndarray, labels: np.ndarray, x_eval: np.ndarray, unlabelled_sample: int = 2000,
    unlabelled_weight: float = 0.3, seed: int = 0,
) -> np.ndarray | None:  # fmt: skip
    """P(anomalous) from a gradient-boosted classifier trained on the same rows as shopguard's classifier:
    the labelled training users (labels: 1, 0 or NaN) plus a sample of unlabelled ones taken as normal,
    classes balanced by weight. None when fewer than MIN_POSITIVES anomalies or normal users are labelled."""
    known = labels[~np.isnan(labels)]
    if (known == 1).sum() < MIN_POSITIVES or (known == 0).sum() < MIN_POSITIVES:
        return None
    params = ModelSettings(
        seed=seed, unlabelled_sample=unlabelled_sample, unlabelled_weight=unlabelled_weight
    )
    rows, y, weight = labelled_and_presumed_normal(labels, np.ones(len(labels), bool), params)
    model = HistGradientBoostingClassifier(random_state=seed, max_iter=300, early_stopping=True,
                                           validation_fraction=0.2)  # fmt: skip
    model.fit(x_train[rows], y.astype(int), sample_weight=weight)
    return model.predict_proba(x_eval)[:, 1]
