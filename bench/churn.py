"""How much a retraining changes the alerts: the default model trained once per model seed on one world
(bench/quality.py's), each model scoring every user, then how far any two agree.

    .venv/bin/python bench/churn.py                         # 50,000 users, 10 trainings (~9 min, 2 cores)
    .venv/bin/python bench/churn.py --reuse --model-seeds 42,43,44
    .venv/bin/python bench/churn.py --reuse --model-seeds 42,47 --trainings 5   # two models of five trainings

For each pair of models: the share of one's top 1% that the other also ranks in its top 1%, the Jaccard
overlap of their alerts (alert or block), how many of one's alerts on truly anomalous users and on the others
the other raises too, which share of the alerts only one of them raises are on truly anomalous users, and the
Spearman correlation of their scores. Then, from six models or more, the same top-1% overlap for the mean
scores of disjoint groups of three and of five models (random draws), which `--trainings` builds into one
model (model.trainings). Nothing is tuned here: the settings are the quality bench's, the figures as
measured.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import random
from pathlib import Path

import numpy as np
import pandas as pd

MODE = "autoencoder"


def _quality():
    """bench/quality.py, whose world and jobs this bench shares (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "shopguard_bench_quality", Path(__file__).with_name("quality.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def overlaps(scores: dict[int, pd.DataFrame], anomalous: set[str], groups: int = 20) -> pd.DataFrame:
    """One row per measure (mean, sd, lowest, highest over the pairs or draws). `scores`: per model seed, the
    user_id, score and action of every user, the same users in each."""
    from scipy.stats import spearmanr

    seeds = sorted(scores)
    frames = {s: scores[s].set_index("user_id").sort_index() for s in seeds}
    users = frames[seeds[0]].index
    if any(not f.index.equals(users) for f in frames.values()):
        raise ValueError("every training must score the same users")
    top_k = int(np.ceil(0.01 * len(users)))

    def top(score: pd.Series) -> set[str]:
        return set(score.nlargest(top_k).index)

    alerts = {s: set(f.index[f.action != "pass"]) for s, f in frames.items()}
    found: dict[str, list[float]] = {}
    for a, b in itertools.combinations(seeds, 2):
        one, other = frames[a].score, frames[b].score
        right, wrong = alerts[a] & anomalous, alerts[a] - anomalous
        for name, value in (
            ("one model: top 1% kept by another", len(top(one) & top(other)) / top_k),
            ("one model: alerts, Jaccard", _share(alerts[a] & alerts[b], alerts[a] | alerts[b])),
            ("one model: alerts on anomalous users kept", _share(right & alerts[b], right)),
            ("one model: alerts on other users kept", _share(wrong & alerts[b], wrong)),
            (
                "one model: alerts only one raises, anomalous",
                _share((alerts[a] ^ alerts[b]) & anomalous, alerts[a] ^ alerts[b]),
            ),
            ("one model: Spearman of the scores", float(spearmanr(one, other).statistic)),
        ):
            found.setdefault(name, []).append(value)
    draw = random.Random(0)
    for size in (3, 5):
        if 2 * size > len(seeds):
            continue
        for _ in range(groups):
            picked = draw.sample(seeds, 2 * size)
            means = [sum(frames[s].score for s in half) / size for half in (picked[:size], picked[size:])]
            found.setdefault(f"mean of {size} models: top 1% kept by another group", []).append(
                len(top(means[0]) & top(means[1])) / top_k
            )
    return pd.DataFrame(
        [
            {
                "measure": name,
                "mean": np.mean(v),
                "sd": np.std(v, ddof=1) if len(v) > 1 else 0.0,
                "lowest": np.min(v),
                "highest": np.max(v),
                "n": len(v),
            }
            for name, v in found.items()
        ]
    )


def _share(part: set[str], whole: set[str]) -> float:
    return len(part) / len(whole) if whole else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[1] / "data" / "bench-churn"))
    parser.add_argument("--reuse", action="store_true", help="keep generated data, features and scores")
    parser.add_argument("--seed", type=int, default=7, help="the generator's seed")
    parser.add_argument("--model-seeds", default="42,43,44,45,46,47,48,49,50,51")
    parser.add_argument("--trainings", type=int, default=1, help="model.trainings of each model")
    args = parser.parse_args()
    seeds = [int(seed) for seed in args.model_seeds.split(",")]
    quality = _quality()
    day = quality.DAY

    from shopguard.config import load_settings
    from shopguard.evaluation import format_table
    from shopguard.runtime import build_spark, configure_logging
    from shopguard.storage import open_storage

    configure_logging()
    common = [
        *quality.world(args.root, args.users, args.days, args.seed),
        "--set",
        f"model.trainings={args.trainings}",
    ]
    settings = load_settings(overrides=[common[i + 1] for i in range(0, len(common), 2)])
    spark = build_spark(
        settings.spark.model_copy(update={"master": "local[*,4]"}), "shopguard-bench-churn", settings.storage
    )
    step = quality.stepper({})
    quality.make_world(step, common, args.root, args.reuse)
    storage = open_storage(spark, settings.storage.backend)
    scores = {}
    for seed in seeds:
        table = f"scores_churn_{seed}" if args.trainings == 1 else f"scores_churn_mean{args.trainings}_{seed}"
        if not (args.reuse and (Path(args.root) / table).exists()):
            quality.train_and_score(step, common, args.root, MODE, seed, table)
        today = storage.read(f"{args.root}/{table}", where=[("score_date", "=", day)])
        scores[seed] = today.select("user_id", "score", "action").toPandas()
    anomalous = set(storage.read(f"{args.root}/raw/truth").toPandas().user_id)
    spark.stop()
    alerted = sorted(int((s.action != "pass").sum()) for s in scores.values())
    each = "" if args.trainings == 1 else f" (each the mean of {args.trainings} trainings)"
    print(f"\n{len(seeds)} models{each} of the {MODE} model; alerts per model {alerted}\n")
    print(format_table(overlaps(scores, anomalous)))


if __name__ == "__main__":
    main()
