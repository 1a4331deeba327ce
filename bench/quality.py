"""Detection quality on a generated benchmark: every mode against IsolationForest and gradient-boosted trees.

    .venv/bin/python bench/quality.py                      # 50,000 users, 30 days, 1% anomalies (~8 min, 2 cores)
    .venv/bin/python bench/quality.py --users 5000 --reuse # smaller, and keep tables from an earlier run
    .venv/bin/python bench/quality.py --model-seeds 42     # one training per mode

One world of generated users (25% of the anomalies subtle, power buyers and resellers, travellers, 2% label
noise, about 1% of users labelled; beyond the design, 0.3% card testers, a fraud no feature was built for,
reported as its own type, and 0.5% legitimate wholesale buyers, reported apart), one feature snapshot, half
of the users held out of training (model.holdout_share = 0.5). Each mode trains on the other half and
scores everyone; the evaluate job measures the held-out half against the generator's truth and writes the
HTML report. The table printed at the end is the one in docs/quality.md.

Each mode is trained once per model seed (`--model-seeds`, `model.seed`) and every figure is the mean over
them, with the lowest and highest PR-AUC beside it: training is chaotic, so a model retrained on features
that differ only in their last bits (sums added in another order) is another model, and one training's
PR-AUC moves by several hundredths (docs/quality.md, "How much a figure moves").
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODES = ("autoencoder", "semi_supervised", "classifier")
DAY = date(2026, 11, 22)


def job(name: str):
    spec = importlib.util.spec_from_file_location(f"job_{name}", ROOT / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--root", default=str(ROOT / "data" / "bench-quality"))
    parser.add_argument(
        "--reuse", action="store_true", help="keep generated data and features of an earlier run"
    )
    parser.add_argument("--seed", type=int, default=7, help="the generator's seed")
    parser.add_argument(
        "--model-seeds", default="42,43,44", help="model.seed of each training per mode, comma-separated"
    )
    args = parser.parse_args()
    seeds = [int(seed) for seed in args.model_seeds.split(",")]

    from shopguard.config import load_settings
    from shopguard.runtime import build_spark, configure_logging

    configure_logging()
    common = world(args.root, args.users, args.days, args.seed)
    settings = load_settings(overrides=[common[i + 1] for i in range(0, len(common), 2)])
    spark = build_spark(
        settings.spark.model_copy(update={"master": "local[*,4]"}),
        "shopguard-bench-quality",
        settings.storage,
    )
    timings: dict[str, float] = {}
    step = stepper(timings)
    make_world(step, common, args.root, args.reuse)
    tables, scorers = [], {}  # model version: (mode, model seed)
    for mode in MODES:
        for seed in seeds:
            table = scores_table(mode, seed)
            version = train_and_score(step, common, args.root, mode, seed, table)
            tables += ["--scores-table", table]
            scorers[version] = (mode, seed)
    report = Path(args.root) / f"quality-{DAY.isoformat()}.html"
    step("evaluate", job("evaluate"), ["--date", DAY.isoformat(), "--against", "truth", *tables,
                                       "--report", str(report), *common])  # fmt: skip
    _print_table(spark, args.root, report, timings, scorers)
    _print_wholesale(spark, args.root, seeds)
    spark.stop()


def world(root: str, users: int, days: int, seed: int) -> list[str]:
    """The generated world's settings, as `--set` arguments for every job (bench/churn.py uses it too)."""
    return [
        "--set", f"tables.root={root}",
        "--set", "spark.conf.spark.sql.shuffle.partitions=16",
        "--set", f"generate.users={users}", "--set", f"generate.days={days}",
        "--set", f"generate.seed={seed}",
        "--set", "generate.anomaly_share=0.01", "--set", "generate.subtle_share=0.25",
        "--set", "generate.anomaly_label_share=0.3", "--set", "generate.known_good_share=0.007",
        "--set", "generate.label_noise=0.02",
        "--set", "generate.unseen_share=0.003", "--set", "generate.wholesale_share=0.005",
        "--set", "model.holdout_share=0.5",
    ]  # fmt: skip


def stepper(timings: dict[str, float]):
    """step(name, main, argv): runs a job's main() and records its seconds in `timings`."""

    def step(name: str, main, argv: list[str]) -> None:
        started = time.perf_counter()
        main(argv)
        timings[name] = time.perf_counter() - started
        logging.getLogger("bench").info("%s: %.0f s", name, timings[name])

    return step


def make_world(step, common: list[str], root: str, reuse: bool) -> None:
    """generate and features for DAY, unless `reuse` and the features table is there already."""
    if not (reuse and (Path(root) / "features").exists()):
        step("generate", job("generate"), ["--end-date", DAY.isoformat(), *common])
        step("features", job("features"), ["--date", DAY.isoformat(), *common])


def train_and_score(step, common: list[str], root: str, mode: str, seed: int, table: str) -> str:
    """One training of `mode` at model.seed `seed`, and its scores of DAY into `table`; its model version."""
    run = f"{mode} {seed}"
    step(f"train {run}", job("train"), ["--date", DAY.isoformat(), "--mode", mode, *common,
                                        "--set", f"model.seed={seed}"])  # fmt: skip
    version = sorted(p.name for p in (Path(root) / "models").iterdir() if mode in p.name)[-1]
    step(f"score {run}", job("score"), ["--date", DAY.isoformat(), "--model-version", version,
                                        "--set", f"tables.scores={table}", *common])  # fmt: skip
    return version


def scores_table(mode: str, seed: int) -> str:
    """Where one training's scores go: each mode and model seed scores into a table of its own."""
    return f"scores_{mode}_{seed}"


def _print_table(
    spark, root: str, report: Path, timings: dict[str, float], scorers: dict[str, tuple[str, int]]
) -> None:
    """Each scorer's figures, the mean over its model seeds (pivot_table's mean), its PR-AUC's range, and
    each training's ROC-AUC and PR-AUC."""
    from shopguard.evaluation import format_table
    from shopguard.storage import open_storage

    rows = open_storage(spark).read(f"{root}/evaluations", where=[("snapshot_date", "=", DAY)]).toPandas()
    rows = rows[rows.run_id == rows.sort_values("evaluated_at").run_id.iloc[-1]]  # this run's evaluation
    who = rows.model_version.map(lambda version: scorers.get(version, (version, None)))  # baselines: no seed
    rows["scorer"], rows["model_seed"] = who.str[0], who.str[1]
    overall = rows[rows.anomaly_type == "all"].pivot_table(index="scorer", columns="metric", values="value")
    table = overall[["roc_auc", "pr_auc", "recall@budget_0.01"]].copy()
    pr_aucs = rows[(rows.anomaly_type == "all") & (rows.metric == "pr_auc")].groupby("scorer").value
    table["pr_auc lowest"], table["pr_auc highest"] = pr_aucs.min(), pr_aucs.max()
    table["trainings"] = rows[rows.anomaly_type == "all"].groupby("scorer").model_version.nunique()
    recall = rows[rows.metric == "recall@budget_0.01"].pivot_table(
        index="scorer", columns="anomaly_type", values="value"
    )
    table = table.join(recall.drop(columns=["all"], errors="ignore").add_prefix("recall@1% "))
    signature = rows[(rows.metric == "top_reason_in_signature") & (rows.anomaly_type == "all")]
    table["top reason in signature"] = signature.groupby("scorer").value.mean()
    print("\nshopguard quality benchmark (held-out users, against the generator's truth)")
    print("each mode: the mean over its trainings, one per model seed\n")
    print(format_table(table.reset_index()))
    trained = rows[
        (rows.anomaly_type == "all") & rows.metric.isin(["roc_auc", "pr_auc"]) & rows.model_seed.notna()
    ]
    per_training = trained.astype({"model_seed": int}).pivot_table(
        index=["scorer", "model_seed"], columns="metric", values="value"
    )
    print("\neach training (model.seed)\n")
    print(format_table(per_training.reset_index()))
    pr = overall["pr_auc"]
    checks = {
        "autoencoder ROC-AUC >= 0.95": overall.loc["autoencoder", "roc_auc"] >= 0.95,
        "autoencoder PR-AUC > IsolationForest": pr["autoencoder"] > pr["baseline:isolation_forest"],
        "semi-supervised PR-AUC > autoencoder": pr["semi_supervised"] > pr["autoencoder"],
        "classifier PR-AUC >= gradient boosting - 0.02": pr["classifier"]
        >= pr.get("baseline:gradient_boosting", 0) - 0.02,
    }
    print("\n" + "\n".join(f"{'PASS' if ok else 'FAIL'}  {check}" for check, ok in checks.items()))
    print(f"\nreport: {report}\ntimings (s): {json.dumps({k: round(v) for k, v in timings.items()})}\n")
    if not all(checks.values()):
        sys.exit(1)


def _print_wholesale(spark, root: str, seeds: list[int]) -> None:
    """Legitimate wholesale buyers (ids w...) are extreme every day: how many of the held-out ones each
    model alerts (all its trainings together), beside the alert share of all held-out normal users."""
    import numpy as np
    import pandas as pd

    from shopguard.model import holdout_mask
    from shopguard.storage import open_storage
    from shopguard.synthetic import WHOLESALE_PREFIX

    storage = open_storage(spark)
    truth = set(storage.read(f"{root}/raw/truth").toPandas().user_id)
    print("legitimate wholesale buyers (held-out, normal): share alerted, beside all held-out normal users")
    for mode in MODES:
        scores = pd.concat(
            storage.read(f"{root}/{scores_table(mode, seed)}", where=[("score_date", "=", DAY)]).toPandas()
            for seed in seeds
        )  # every training's scores: the shares are means over them
        scores = scores[holdout_mask(scores.user_id.to_numpy(), 0.5) & ~scores.user_id.isin(truth)]
        wholesale = scores.user_id.str.startswith(WHOLESALE_PREFIX)
        print(
            f"  {mode:>16}: {scores.is_anomaly[wholesale].mean():.1%} of {wholesale.sum() // len(seeds)} "
            f"wholesale buyers, {scores.is_anomaly[~wholesale].mean():.1%} of "
            f"{int(np.sum(~wholesale)) // len(seeds)} other normal users"
        )


if __name__ == "__main__":
    main()
