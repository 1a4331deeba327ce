"""The sample of users that single-node code (training, the evaluation baselines) collects to the driver:
every labelled user, because they are rare and what supervised learning and the metrics need, and a
deterministic share of the others by user hash, so that reruns pick the same users."""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

log = logging.getLogger("shopguard.sampling")


def capped_sample(features: DataFrame, max_rows: int, seed: int, setting: str) -> tuple[DataFrame, int]:
    """(about `max_rows` rows of `features`, how many rows it held). `features` has `user_id` and `label`
    (null: unlabelled); `setting` names the cap in the log."""
    row = features.agg(F.count(F.lit(1)).alias("rows"), F.count("label").alias("labelled")).first()
    rows, labelled = (int(row["rows"]), int(row["labelled"])) if row else (0, 0)
    if rows <= max_rows:
        return features, rows
    keep = max(max_rows - labelled, 0) / max(rows - labelled, 1)
    log.info("sampling %.1f%% of %d unlabelled rows, keeping all %d labelled (%s)",
             100 * keep, rows - labelled, labelled, setting)  # fmt: skip
    sampled = F.abs(F.xxhash64("user_id", F.lit(seed))) % 1_000_000 < keep * 1_000_000
    return features.where(F.col("label").isNotNull() | sampled), rows
