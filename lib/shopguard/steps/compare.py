"""Champion against challenger on labelled users that neither model trained on: the promotion's evidence."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np

from shopguard.catalog import Tables
from shopguard.config import Settings
from shopguard.evaluation import join_truth, never_trained_on, quality_metrics
from shopguard.model.metadata import ModelMetadata
from shopguard.registry import read_metadata
from shopguard.sampling import collect_drawn, known_users, with_known
from shopguard.steps.evaluate import ground_truth


@dataclass
class Comparison:
    pr_auc: dict[str, float] = field(default_factory=dict)  # model version -> PR-AUC on the compared users
    anomalies: int = 0  # known anomalous users among them
    verdict: bool | None = None  # the challenger wins by the margin; None: too little evidence to say
    note: str = ""


def compare_on_unseen_labels(
    tables: Tables, settings: Settings, key: bytes | None, day: date, champion: str, challenger: str
) -> Comparison:
    """PR-AUC of both models' scores of `day` on the users each model kept out of fitting (validation or
    holdout users: both models pick them by the same hash), against the latest verdicts."""
    root = tables.path("models")
    truth = ground_truth(tables, settings, key, day)
    flagged = with_known(known_users(tables.storage.spark, truth.user_id))
    drawn_champion, drawn = collect_drawn(tables.on("scores", day).select("user_id", "score").transform(flagged),
                                          settings.evaluation.max_evaluated_rows, settings.model.seed,
                                          "evaluation.max_evaluated_rows")  # fmt: skip
    shadow = (
        tables.on("shadow_scores", day).select("user_id", "score").transform(flagged).transform(drawn.weigh)
    )
    scores = {
        champion: drawn_champion[["user_id", "score", "weight"]],
        challenger: shadow.select("user_id", "score", "weight").toPandas(),
    }
    users = scores[champion].user_id.to_numpy(dtype=object)
    unseen = np.ones(len(users), bool)
    for version in (champion, challenger):
        unseen &= _kept_out(read_metadata(root, version), users, settings.model.validation_fraction)
    compared_users = round(drawn_champion["weight"].to_numpy()[unseen].sum())
    truth = truth[truth.user_id.isin(set(users[unseen]))]
    compared = Comparison(anomalies=int(truth.anomaly_type.notna().sum()))
    for version, frame in scores.items():
        metrics = quality_metrics(join_truth(frame[frame.user_id.isin(set(users[unseen]))], truth), version)
        found = metrics[(metrics.anomaly_type == "all") & (metrics.metric == "pr_auc")].value
        if len(found):
            compared.pr_auc[version] = float(found.iloc[0])
    margin, needed = settings.nightly.promote_margin, settings.nightly.promote_min_anomalies
    if compared.anomalies < needed or len(compared.pr_auc) < 2:
        compared.note = (f"{compared.anomalies} known anomalies among {compared_users} users neither model "
                         f"trained on; nightly.promote_min_anomalies is {needed}")  # fmt: skip
        return compared
    gain = compared.pr_auc[challenger] - compared.pr_auc[champion]
    compared.verdict = gain >= margin
    compared.note = (f"PR-AUC {compared.pr_auc[challenger]:.3f} against {compared.pr_auc[champion]:.3f} on "
                     f"{compared_users} users neither model trained on ({compared.anomalies} known anomalies; "
                     f"nightly.promote_margin {margin})")  # fmt: skip
    return compared


def _kept_out(metadata: ModelMetadata, users: np.ndarray, default_fraction: float) -> np.ndarray:
    fraction = float(metadata.training.get("params", {}).get("validation_fraction", default_fraction))
    return never_trained_on(users, metadata.holdout_share, fraction, training_users=users)
