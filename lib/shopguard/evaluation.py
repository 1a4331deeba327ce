"""How good are the scores: metrics from scikit-learn on frames brought to the driver.

The inputs are small (one score per user, one row per known anomaly; above `evaluation.max_evaluated_rows`
users every known anomaly and a sample of the others), so everything here is pandas and numpy on the driver.
A frame's optional `weight` column says how many users each row stands for (absent: one); every metric and
count here is weighted. A "scorer" is anything that gave each user a score: a model's scores partition or a
baseline fitted here (IsolationForest, HistGradientBoostingClassifier).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from itertools import repeat
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_fscore_support, roc_auc_score

from shopguard.anomalies import SIGNATURES

TOP_SHARES = (0.01, 0.05)
BUDGETS = (0.001, 0.01, 0.05)


_WINDOW_SUFFIX = re.compile(r"_\d+d$")


def feature_of_reason(reason: str) -> str:
    """'login_failures_1d high' -> 'login_failures' (window and direction dropped)."""
    return _WINDOW_SUFFIX.sub("", reason.rsplit(" ", 1)[0])


def _groups(truth: pd.DataFrame) -> list[tuple[str, pd.Series]]:
    """(name, which users are positives) for all anomalies, each type, and the subtle ones if known."""
    groups = [("all", truth["anomaly_type"].notna())]
    groups += [(t, truth["anomaly_type"] == t) for t in sorted(truth["anomaly_type"].dropna().unique())]
    if "subtle" in truth and truth["subtle"].notna().any():
        groups.append(("subtle", truth["subtle"].astype("boolean").fillna(False).astype(bool)))
    return groups


def weights(frame: pd.DataFrame) -> np.ndarray:
    """How many users each row stands for."""
    return frame["weight"].to_numpy(float) if "weight" in frame else np.ones(len(frame))


def top_share(scores: np.ndarray, row_weights: np.ndarray, share: float) -> np.ndarray:
    """Which rows fall within the top `share` of users by score (at least one row; ties in row order, as
    pandas' rank(method="first")): a row is in while the users ranked above it weigh less than the budget."""
    order = np.argsort(-scores, kind="stable")
    above = np.cumsum(row_weights[order]) - row_weights[order]
    inside = np.zeros(len(scores), bool)
    inside[order] = above < max(1, round(share * row_weights.sum()))
    return inside


def weighted_like(frame: pd.DataFrame, like: pd.DataFrame) -> pd.DataFrame:
    """`frame` weighted so that its anomalous users and its other users each weigh what they weigh in `like`
    (post-stratification): a baseline scored on its own sample of the users measures the same population as
    the model it is compared with."""
    target, anomalous = weights(like), like["anomaly_type"].notna().to_numpy()
    row_weights = np.ones(len(frame))
    for group, total in ((frame["anomaly_type"].notna().to_numpy(), target[anomalous].sum()),
                         (frame["anomaly_type"].isna().to_numpy(), target[~anomalous].sum())):  # fmt: skip
        if group.any():
            row_weights[group] = total / group.sum()
    return frame.assign(weight=row_weights)


def join_truth(scores: pd.DataFrame, anomalies: pd.DataFrame) -> pd.DataFrame:
    """scores (user_id, score, ...) + known anomalies (user_id, anomaly_type[, subtle]) -> one frame; users
    not among the anomalies are normal (anomaly_type null)."""
    columns = [c for c in ("user_id", "anomaly_type", "subtle") if c in anomalies]
    return scores.merge(anomalies[columns].drop_duplicates("user_id"), on="user_id", how="left")


def is_in(values: np.ndarray, members: Iterable[str]) -> np.ndarray:
    """Membership of user ids by hash: np.isin sorts object arrays with Python comparisons, which took
    two and a half minutes of evaluate at 100 k users."""
    return pd.Series(values, dtype=object).isin(set(members)).to_numpy()


def never_trained_on(
    users: np.ndarray, holdout_share: float, validation_fraction: float, training_users: Iterable[str]
) -> np.ndarray:
    """Which users the model never fitted on: its holdout (model.holdout_share) where it had one; else its
    validation users (a stable hash share, used for early stopping only) and users absent from the
    snapshots it trained on."""
    from shopguard.model import holdout_mask, validation_mask

    if holdout_share > 0:
        return holdout_mask(users, holdout_share)
    return validation_mask(users, validation_fraction) | ~is_in(users, training_users)


def with_unscored(frame: pd.DataFrame, anomalies: pd.DataFrame, eligible: Iterable[str]) -> pd.DataFrame:
    """`frame` plus the known anomalous users in `eligible` that have no score (no features that day:
    inactive in the window, or dropped upstream) as misses: ranked below everyone, never alerted. Without
    them a snapshot that silently lost half of the frauds would look as good as a complete one."""
    missing = anomalies[
        anomalies.user_id.isin(set(eligible)) & ~anomalies.user_id.isin(set(frame.user_id))
    ].drop_duplicates("user_id")
    if missing.empty:
        return frame.assign(unscored=False)
    floor = (frame["score"].min() if len(frame) else 0.0) - 1.0
    filler: dict[str, Any] = {"score": floor, "unscored": True}
    if "weight" in frame:
        filler["weight"] = 1.0
    if "is_anomaly" in frame:
        filler["is_anomaly"] = False
    if "action" in frame:
        filler["action"] = "pass"
    added = missing[[c for c in ("user_id", "anomaly_type", "subtle") if c in missing]].assign(**filler)
    if "reasons" in frame:
        added["reasons"] = [[] for _ in range(len(added))]
    return pd.concat([frame.assign(unscored=False), added], ignore_index=True)


def quality_metrics(frame: pd.DataFrame, scorer: str, budgets: Iterable[float] = BUDGETS) -> pd.DataFrame:
    """Long table (scorer, anomaly_type, metric, value): ROC-AUC, PR-AUC (average precision), and
    precision / recall / F1 at each alert budget and, where the frame has them, at the model's thresholds
    (`is_anomaly` for alert, `action == 'block'` for block). Each group is scored against normal users only;
    rows count by their weight."""
    rows: list[tuple[str, str, str, float]] = []
    normal = frame["anomaly_type"].isna()
    row_weights = weights(frame)
    score = frame["score"].to_numpy(float)
    cuts = {f"budget_{b:g}": pd.Series(top_share(score, row_weights, b), frame.index) for b in budgets}
    if "is_anomaly" in frame:
        cuts["threshold_alert"] = frame["is_anomaly"].astype(bool)
    if "action" in frame:
        cuts["threshold_block"] = frame["action"] == "block"
    for name, positive in _groups(frame):
        subset = (positive | normal).to_numpy()
        y = positive[subset].astype(int).to_numpy()
        if y.sum() == 0 or y.sum() == len(y):
            continue
        w = row_weights[subset]
        rows += [(scorer, name, "roc_auc", float(roc_auc_score(y, score[subset], sample_weight=w))),
                 (scorer, name, "pr_auc", float(average_precision_score(y, score[subset], sample_weight=w))),
                 (scorer, name, "positives", float(w[y == 1].sum()))]  # fmt: skip
        for cut, flagged in cuts.items():
            predicted = flagged[subset].astype(int).to_numpy()
            p, r, f, _ = precision_recall_fscore_support(
                y, predicted, average="binary", zero_division=0, sample_weight=w
            )
            rows += [(scorer, name, f"precision@{cut}", float(p)), (scorer, name, f"recall@{cut}", float(r)),
                     (scorer, name, f"f1@{cut}", float(f))]  # fmt: skip
    return pd.DataFrame(rows, columns=["scorer", "anomaly_type", "metric", "value"])


def reason_signature_rate(frame: pd.DataFrame, scorer: str) -> pd.DataFrame:
    """How often the top reason of an injected anomaly names one of its type's signature features."""
    rows = []
    anomalies = frame[
        frame["anomaly_type"].isin(list(SIGNATURES)) & frame["reasons"].map(lambda r: len(r) > 0)
    ]
    for kind, group in anomalies.groupby("anomaly_type"):
        hits = group["reasons"].map(lambda r, k=kind: feature_of_reason(r[0]) in SIGNATURES[k])
        rows.append((scorer, kind, "top_reason_in_signature", float(hits.mean())))
    if len(anomalies):
        all_hits = anomalies.apply(
            lambda row: feature_of_reason(row["reasons"][0]) in SIGNATURES[row["anomaly_type"]], axis=1
        )
        rows.append((scorer, "all", "top_reason_in_signature", float(all_hits.mean())))
    return pd.DataFrame(rows, columns=["scorer", "anomaly_type", "metric", "value"])


def common_reasons(
    reasons: Iterable[Iterable[str]], top: int = 15, row_weights: Iterable[float] | None = None
) -> list[tuple[str, float]]:
    """The most frequent reasons among alerts, each alert counted by its weight (default one)."""
    counted: defaultdict[str, float] = defaultdict(float)
    for rs, w in zip(reasons, row_weights if row_weights is not None else repeat(1.0), strict=False):
        for r in rs:
            counted[r] += w
    return sorted(counted.items(), key=lambda item: -item[1])[:top]  # stable: ties in first-seen order


def ranking_summary(scores: pd.DataFrame, anomalies: pd.DataFrame) -> pd.DataFrame:
    """Per anomaly type (and 'all'): how many known anomalies were scored, how many rank in the top 1% and
    5% of all users, and ROC-AUC / PR-AUC against users not known as anomalous (rows count by `weight`)."""
    frame = join_truth(scores[[c for c in ("user_id", "score", "weight") if c in scores]], anomalies)
    row_weights, score = weights(frame), frame["score"].to_numpy(float)
    order = np.argsort(-score, kind="stable")
    rank_share = np.empty(len(frame))
    rank_share[order] = np.cumsum(row_weights[order]) / row_weights.sum()
    frame["rank_share"] = rank_share
    normal = frame["anomaly_type"].isna()
    rows = []
    for name, positive in _groups(frame):
        if name == "subtle":
            continue
        known = len(anomalies) if name == "all" else int((anomalies["anomaly_type"] == name).sum())
        row = {"anomaly_type": name, "known": known, "scored": int(positive.sum())}
        for share in TOP_SHARES:
            inside = frame.loc[positive, "rank_share"] <= share
            row[f"top_{share:.0%}"] = int(inside.sum())
            row[f"recall_top_{share:.0%}"] = float(inside.mean()) if positive.any() else np.nan
        subset = (positive | normal).to_numpy()
        y = positive[subset].astype(int)
        if y.nunique() == 2:
            w = row_weights[subset]
            row["roc_auc"] = float(roc_auc_score(y, score[subset], sample_weight=w))
            row["pr_auc"] = float(average_precision_score(y, score[subset], sample_weight=w))
        rows.append(row)
    return pd.DataFrame(rows)


def metric_table(
    metrics: pd.DataFrame, metric_names: Iterable[str], anomaly_type: str = "all"
) -> pd.DataFrame:
    """Wide table: one row per scorer, one column per metric, for one anomaly type."""
    chosen = metrics[(metrics["anomaly_type"] == anomaly_type) & metrics["metric"].isin(list(metric_names))]
    return chosen.pivot_table(index="scorer", columns="metric", values="value", sort=False)[
        list(metric_names)
    ]


def format_table(frame: pd.DataFrame, floats: str = "{:.3f}", index: bool = False) -> str:
    """A plain-text table for logs and terminals."""
    shown = frame.copy()
    for column in shown.columns:
        if shown[column].dtype.kind == "f":
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else floats.format(v))
    return shown.to_string(index=index)
