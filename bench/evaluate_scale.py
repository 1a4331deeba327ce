"""Evaluate's driver memory and time at millions of users: its cap (evaluation.max_evaluated_rows) against
every score on the driver, measured in the same run.

    .venv/bin/python bench/evaluate_scale.py                                   # 10M events' users x 30
    .venv/bin/python bench/evaluate_scale.py --source data/bench-speed/1M --copies 10 --json FILE

bench/speed.py's tables of one size (generate, features, train and score run; ~1 user per 100 events) are
the source. A night over a billion events has ~11 M users, more than these machines can generate and score
in a bench, so this bench copies the snapshot date's features, scores and truth with every user repeated
--copies times under a new id (`<id>~<copy>`; the model is shared), then runs
`./submit.sh evaluate --against truth` over the copy, alternating --runs times: at the cap given
(default: conf/base's) and, as the reference, with a cap above the number of users (every score on the
driver, as evaluate read them before the cap). The baselines are off: their own cap
(evaluation.max_baseline_rows) bounds them. Prints a Markdown table of seconds and the largest process's
peak memory (medians; the ratio cap / reference) and the headline metrics of both, and writes --json FILE.
The copy repeats each user's scores, so both runs measure the same ranking; the metrics differ only by the
sample.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import DAY, ROOT, measured  # noqa: E402

COPIED = ("features", "scores", "truth")
HEADLINE = ("roc_auc", "pr_auc", "recall@budget_0.01", "precision@threshold_alert", "recall@threshold_alert")


def build_copy(source: Path, target: Path, copies: int, day: date) -> int:
    """The copy's tables under `target`; returns its users on `day`."""
    from pyspark.sql import functions as F

    from shopguard.catalog import Tables, contract
    from shopguard.config import TableSettings, load_settings
    from shopguard.runtime import build_spark
    from shopguard.storage import open_storage

    settings = load_settings()
    spark = build_spark(settings.spark, "shopguard-bench-evaluate-scale", settings.storage)
    storage = open_storage(spark)
    origin, copy = (Tables(storage, TableSettings(root=str(p))) for p in (source, target))
    repeat = spark.range(copies).select(F.col("id").cast("string").alias("_copy"))
    for name in COPIED:
        column = contract(name).date_column
        frame = origin.on(name, day) if column else origin.read(name)
        many = (
            frame.crossJoin(repeat).withColumn("user_id", F.concat_ws("~", "user_id", "_copy")).drop("_copy")
        )
        copy.overwrite(name, many, {"job": "bench-evaluate-scale", "copies": copies})
    users = copy.on("features", day).count()
    spark.stop()
    (target / "models").symlink_to((source / "models").resolve(), target_is_directory=True)
    return users


def headline(target: Path) -> dict[str, float]:
    """The model's figures over all anomaly types from the latest evaluation."""
    from deltalake import DeltaTable

    rows = DeltaTable(str(target / "evaluations")).to_pandas()
    rows = rows[
        (rows.run_id == rows.sort_values("evaluated_at").run_id.iloc[-1]) & (rows.anomaly_type == "all")
    ]
    rows = rows[~rows.model_version.str.startswith("baseline:")].set_index("metric")["value"]
    return {m: round(float(rows[m]), 4) for m in HEADLINE if m in rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", default=str(ROOT / "data" / "bench-speed" / "10M"))
    parser.add_argument("--copies", type=int, default=30)
    parser.add_argument("--cap", type=int, help="evaluation.max_evaluated_rows (default: conf/base's)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--root", default=str(ROOT / "data" / "bench-evaluate-scale"))
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)

    from shopguard.config import load_settings
    from shopguard.runtime import configure_logging

    configure_logging()
    source, target = Path(args.source).resolve(), Path(args.root).resolve() / f"x{args.copies}"
    if not (source / "scores").exists():
        raise SystemExit(f"no scores under {source}: run bench/speed.py for that size first")
    marker = target / "users.json"
    if not marker.exists():
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        marker.write_text(json.dumps({"users": build_copy(source, target, args.copies, DAY)}))
    users = json.loads(marker.read_text())["users"]
    cap = args.cap or load_settings().evaluation.max_evaluated_rows
    log = target / "bench.log"
    runs: dict[str, list[tuple[float, float]]] = {"cap": [], "every user": []}
    figures: dict[str, dict[str, float]] = {}
    for _ in range(args.runs):
        for name, limit in (("cap", cap), ("every user", users + 1)):
            command = ["./submit.sh", "evaluate", "--date", DAY.isoformat(), "--against", "truth",
                       "--report", str(target / f"report-{limit}.html"), "--set", f"tables.root={target}",
                       "--set", "evaluation.baselines=false", "--set", f"evaluation.max_evaluated_rows={limit}"]  # fmt: skip
            seconds, peak, _ = measured(command, log)
            runs[name].append((seconds, peak))
            figures[name] = headline(target)
    out: dict[str, Any] = {"users": users, "cap": cap}
    for name, measured_runs in runs.items():
        out[name] = {
            "seconds": round(statistics.median(s for s, _ in measured_runs), 1),
            "peak_rss_mib": round(statistics.median(p for _, p in measured_runs)),
            "runs": [round(s, 1) for s, _ in measured_runs],
            **figures[name],
        }
    capped, every = out["cap"], out["every user"]
    print(f"\nevaluate over {users:,} users (the cap: {cap:,} besides the known anomalous users)\n")
    print("| run | seconds | peak MiB | " + " | ".join(HEADLINE) + " |")
    print("|---" * (3 + len(HEADLINE)) + "|")
    for name, row in (("cap", capped), ("every user", every)):
        print(f"| {name} | {row['seconds']} | {row['peak_rss_mib']} | "
              + " | ".join(f"{row.get(m, float('nan')):.4f}" for m in HEADLINE) + " |")  # fmt: skip
    print(f"| cap / every user | {capped['seconds'] / every['seconds']:.2f}x | "
          f"{capped['peak_rss_mib'] / every['peak_rss_mib']:.2f}x | "
          + " | ".join(f"{capped.get(m, 0) - every.get(m, 0):+.4f}" for m in HEADLINE) + " |")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
