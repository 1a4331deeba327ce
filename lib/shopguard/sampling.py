"""The samples of users that single-node code collects to the driver. Training and the evaluation baselines
take every labelled user, because they are rare and what supervised learning and the metrics need;
evaluation takes every known anomalous user. Both take a deterministic share of the others by user hash,
so that reruns pick the same users and two samples with one seed nest (the smaller share's users are all in
the larger one's)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

log = logging.getLogger("shopguard.sampling")

_BUCKETS = 1_000_000


def hashed_share(share: float, seed: int) -> Column:
    """True for a stable `share` of users, by a hash of `user_id` and `seed`."""
    return F.abs(F.xxhash64("user_id", F.lit(seed))) % _BUCKETS < share * _BUCKETS


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
    return features.where(F.col("label").isNotNull() | hashed_share(keep, seed)), rows


@dataclass(frozen=True)
class UserSample:
    """Which users of a date evaluation reads: all of them (`share` 1), or every known anomalous user and a
    hashed `share` of the others, each of whom stands for `weight` users (the others' count over the
    sampled others' count, so weighted totals are exact)."""

    rows: int  # users of the date
    known: int  # known anomalous users among them, all kept
    share: float
    seed: int
    weight: float = 1.0

    @property
    def sampled(self) -> bool:
        return self.share < 1.0

    def keep(self, flagged: Column) -> Column:
        """The rows to keep; `flagged` is true for known anomalous users."""
        return flagged | hashed_share(self.share, self.seed) if self.sampled else F.lit(True)

    def weigh(self, frame: DataFrame) -> DataFrame:
        """The rows of `frame` (with `_known`) to keep, with `weight`."""
        weight = F.when(F.col("_known"), F.lit(1.0)).otherwise(F.lit(self.weight))
        return frame.where(self.keep(F.col("_known"))).withColumn("weight", weight)


def user_sample(rows: int, known: int, max_others: int, seed: int) -> UserSample:
    """Every user where at most `max_others` are not known anomalous; else the share of them that keeps
    about `max_others`."""
    others = rows - known
    share = 1.0 if others <= max_others else max_others / others
    return UserSample(rows, known, share, seed)


def known_users(spark: SparkSession, known: Iterable[str]) -> DataFrame:
    """A small broadcast frame (user_id, _known) of the known anomalous users, to flag them with
    `with_known`."""
    users = pd.DataFrame({"user_id": pd.Series(sorted(set(known)), dtype=object), "_known": True})
    return F.broadcast(spark.createDataFrame(users, "user_id string, _known boolean"))


def with_known(known: DataFrame) -> Callable[[DataFrame], DataFrame]:
    """Adds `_known` (never null) from a `known_users` frame."""

    def transform(frame: DataFrame) -> DataFrame:
        return frame.join(known, "user_id", "left").withColumn("_known", F.col("_known").isNotNull())

    return transform


def collect_drawn(
    frame: DataFrame, max_others: int, seed: int, setting: str
) -> tuple[pd.DataFrame, UserSample]:
    """`frame` (one row per user, with `_known`) on the driver: every row where at most `max_others` are not
    known anomalous, else every known one and a hashed share of the others, each with the `weight` of the
    users it stands for (the others' count over the sampled others' count, so weighted totals are exact).
    One count job first, so that the driver never holds more than about `max_others` + known rows."""
    row = frame.agg(
        F.count(F.lit(1)).alias("rows"), F.sum(F.col("_known").cast("long")).alias("known")
    ).first()
    rows, known = (int(row["rows"]), int(row["known"] or 0)) if row else (0, 0)
    drawn = user_sample(rows, known, max_others, seed)
    collected = frame.where(drawn.keep(F.col("_known"))).toPandas()
    flags = collected["_known"].to_numpy(bool)
    if drawn.sampled:
        others = int((~flags).sum())
        drawn = replace(drawn, weight=(rows - known) / max(others, 1))
        log.info("reading every known anomalous user (%d) and %d of %d others, each standing for %.2f (%s)",
                 known, others, rows - known, drawn.weight, setting)  # fmt: skip
    return collected.assign(weight=np.where(flags, 1.0, drawn.weight)), drawn
