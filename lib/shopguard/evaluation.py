"""How well scores rank known anomalies: metrics from scikit-learn on pandas frames brought to the driver.

Inputs are small: one score per user and one row per known anomaly, so the driver holds them easily.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

TOP_SHARES = (0.01, 0.05)


def ranking_summary(scores: pd.DataFrame, anomalies: pd.DataFrame) -> pd.DataFrame:
    """Per anomaly type (and 'all'): how many injected/known anomalies were scored, how many rank in the top
    1% and 5% of all users, and ROC-AUC / PR-AUC of the type against users not known as anomalous.

    scores: user_id, score. anomalies: user_id, anomaly_type (every other scored user counts as normal).
    """
    ranked = scores[["user_id", "score"]].copy()
    ranked["rank_share"] = ranked["score"].rank(ascending=False, method="first") / len(ranked)
    ranked = ranked.merge(
        anomalies[["user_id", "anomaly_type"]].drop_duplicates("user_id"), on="user_id", how="left"
    )
    normal = ranked["anomaly_type"].isna()
    rows = []
    groups = [("all", ~normal)] + [
        (t, ranked["anomaly_type"] == t) for t in sorted(anomalies["anomaly_type"].dropna().unique())
    ]
    for name, is_type in groups:
        subset = ranked[is_type]
        row = {
            "anomaly_type": name,
            "known": int((anomalies["anomaly_type"] == name).sum()) if name != "all" else len(anomalies),
            "scored": len(subset),
        }
        for share in TOP_SHARES:
            row[f"top_{share:.0%}"] = int((subset["rank_share"] <= share).sum())
            row[f"recall_top_{share:.0%}"] = (
                float((subset["rank_share"] <= share).mean()) if len(subset) else np.nan
            )
        both = ranked[is_type | normal]
        y = (~both["anomaly_type"].isna()).astype(int)
        if y.nunique() == 2:
            row["roc_auc"] = float(roc_auc_score(y, both["score"]))
            row["pr_auc"] = float(average_precision_score(y, both["score"]))
        rows.append(row)
    return pd.DataFrame(rows)


def format_table(frame: pd.DataFrame, floats: str = "{:.3f}") -> str:
    """A plain-text table for logs and terminals."""
    shown = frame.copy()
    for column in shown.columns:
        if shown[column].dtype.kind == "f":
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else floats.format(v))
    return shown.to_string(index=False)
