"""Alert and block thresholds, and the percentile grid that turns a score into a percentile of training."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from shopguard.model.training import TrainingParams

log = logging.getLogger("shopguard.model")

PERCENTILE_GRID = np.unique(np.concatenate([np.linspace(0, 99, 991), np.linspace(99, 100, 101)]))


def reference_quantiles(scores: np.ndarray) -> dict[str, list[float]]:
    """Training scores at each point of PERCENTILE_GRID, stored with the model for `percentile_of`."""
    return {
        "percentiles": PERCENTILE_GRID.tolist(),
        "values": np.quantile(scores, PERCENTILE_GRID / 100).tolist(),
    }


def percentile_of(scores: np.ndarray, reference_quantiles: dict[str, list[float]]) -> np.ndarray:
    """Percentile of each score within the training scores (0-100)."""
    percentiles: np.ndarray = np.interp(
        scores, reference_quantiles["values"], reference_quantiles["percentiles"]
    )
    return percentiles


def choose_thresholds(
    scores: np.ndarray, val_scores: np.ndarray, val_labels: np.ndarray | None, params: TrainingParams
) -> dict[str, Any]:
    """Alert and block thresholds: by budget, the exact quantiles of all training scores (numpy on the
    driver, not approxQuantile) that alert the top `alert_budget` and block the top `block_budget` of users;
    by precision, the lowest thresholds that reach the target precisions on the labelled validation users
    (falling back to the budget where too few labels allow it)."""
    by_budget = {
        "alert": float(np.quantile(scores, 1 - params.alert_budget)),
        "block": float(np.quantile(scores, 1 - params.block_budget)),
    }
    chosen: dict[str, Any] = {**by_budget, "method": "budget", "alert_budget": params.alert_budget,
                              "block_budget": params.block_budget}  # fmt: skip
    if params.threshold_method == "precision":
        from sklearn.metrics import precision_recall_curve

        known = ~np.isnan(val_labels) if val_labels is not None else np.zeros(len(val_scores), bool)
        y = val_labels[known] if val_labels is not None else np.array([])
        if known.sum() < 20 or y.sum() < 5 or y.sum() == len(y):
            log.warning("too few labelled validation users for precision thresholds; using the budgets")
            chosen["method"] = "budget (precision asked, too few labels)"
        else:
            precision, _, cuts = precision_recall_curve(y, val_scores[known])
            for name, target in (("alert", params.alert_precision), ("block", params.block_precision)):
                reached = np.flatnonzero(precision[:-1] >= target)
                chosen[name] = float(cuts[reached[0]]) if len(reached) else float(cuts[-1])
            chosen["block"] = max(chosen["block"], chosen["alert"])
            chosen.update(method="precision", alert_precision=params.alert_precision,
                          block_precision=params.block_precision)  # fmt: skip
    # The share of training users each threshold would have flagged: tomorrow's expected alert volume.
    chosen["expected_alert_share"] = float((scores >= chosen["alert"]).mean())
    chosen["expected_block_share"] = float((scores >= chosen["block"]).mean())
    return chosen
