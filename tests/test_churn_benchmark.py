"""bench/churn.py's overlaps: what it reports of two trainings' scores and alerts must be what they hold."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import load_script


def trained(scores: list[float], alerted: int) -> pd.DataFrame:
    """Users u000.. with these scores; the `alerted` highest alert."""
    frame = pd.DataFrame({"user_id": [f"u{i:03d}" for i in range(len(scores))], "score": scores})
    frame["action"] = "pass"
    frame.loc[frame.score.nlargest(alerted).index, "action"] = "alert"
    return frame


def test_overlaps_count_what_two_trainings_share_at_the_top_and_in_their_alerts():
    churn = load_script("bench/churn.py")
    base = [float(i) for i in range(200)]  # top 1% and alerts: u198, u199
    swapped = base[:197] + [199.0, 197.0, 198.0]  # u197 up, u198 down: u197, u199
    found = churn.overlaps({1: trained(base, 2), 2: trained(swapped, 2)[::-1]}, anomalous={"u199"}).set_index(
        "measure"
    )

    assert found.loc["one model: top 1% kept by another", "mean"] == pytest.approx(1 / 2)
    assert found.loc["one model: alerts, Jaccard", "mean"] == pytest.approx(1 / 3)
    assert found.loc["one model: alerts on anomalous users kept", "mean"] == pytest.approx(1.0)
    assert found.loc["one model: alerts on other users kept", "mean"] == pytest.approx(0.0)
    assert found.loc["one model: Spearman of the scores", "mean"] < 1.0
    assert found.loc["one model: alerts, Jaccard", "n"] == 1
    assert "mean of 3 models: top 1% kept by another group" not in found.index  # needs six trainings


def test_overlaps_refuse_trainings_that_scored_different_users():
    churn = load_script("bench/churn.py")
    with pytest.raises(ValueError, match="the same users"):
        churn.overlaps({1: trained([1.0, 2.0], 1), 2: trained([1.0, 2.0, 3.0], 1)}, anomalous=set())
