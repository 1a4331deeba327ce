"""Scale of the nightly jobs: generate and features at a reference size and at ten million events and more.

    .venv/bin/python bench/scale.py                                # 10,000 and 120,000 users, 30 days
    .venv/bin/python bench/scale.py --reference 5000 --users 50000

Both sizes run in one process and one Spark session (local[*]); the ratio of their throughputs (events per
second) is the figure to compare between machines, which are too noisy for absolute times.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DAY = "2026-11-22"


def job(name: str):
    spec = importlib.util.spec_from_file_location(f"job_{name}", ROOT / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def run(users: int, days: int, root: Path) -> dict[str, float]:
    from deltalake import DeltaTable

    shutil.rmtree(root, ignore_errors=True)
    settings = [
        "--set",
        f"tables.root={root}",
        "--set",
        f"generate.users={users}",
        "--set",
        f"generate.days={days}",
    ]
    started = time.perf_counter()
    job("generate")(["--end-date", DAY, *settings])
    generated = time.perf_counter() - started
    events = sum(json.loads(DeltaTable(str(root / t)).history(1)[0]["userMetadata"])["rows_written"]
                 for t in ("raw/clicks", "raw/transactions"))  # fmt: skip
    started = time.perf_counter()
    job("features")(["--date", DAY, *settings])
    featured = time.perf_counter() - started
    return {"users": users, "events": events, "generate_s": generated, "generate_events_per_s": events / generated,
            "features_s": featured, "features_events_per_s": events / featured}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reference", type=int, default=10_000, help="users in the reference run")
    parser.add_argument("--users", type=int, default=120_000, help="users in the large run")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--root", default=str(ROOT / "data" / "bench-scale"))
    args = parser.parse_args()

    from shopguard.config import load_settings
    from shopguard.runtime import build_spark, configure_logging

    configure_logging()
    # The session the jobs would build from conf/ (they reuse this one), with room for ten million rows.
    overrides = ["spark.conf.spark.driver.memory=12g", "spark.conf.spark.sql.shuffle.partitions=16"]
    settings = load_settings(overrides=overrides)
    spark = build_spark(settings.spark, "shopguard-bench-scale", settings.storage)
    reference = run(args.reference, args.days, Path(args.root) / "reference")
    large = run(args.users, args.days, Path(args.root) / "large")
    spark.stop()

    print("\nshopguard scale benchmark (one process, local[*])\n")
    print(
        f"{'run':<10}{'users':>9}{'events':>12}{'generate s':>12}{'events/s':>10}{'features s':>12}{'events/s':>10}"
    )
    for name, r in (("reference", reference), ("large", large)):
        print(f"{name:<10}{r['users']:>9}{r['events']:>12}{r['generate_s']:>12.0f}{r['generate_events_per_s']:>10.0f}"
              f"{r['features_s']:>12.0f}{r['features_events_per_s']:>10.0f}")  # fmt: skip
    ratio = {k: large[k] / reference[k] for k in ("generate_events_per_s", "features_events_per_s", "events")}
    print(f"\nthroughput large / reference: generate {ratio['generate_events_per_s']:.2f}, "
          f"features {ratio['features_events_per_s']:.2f} ({ratio['events']:.1f}x the events)\n")  # fmt: skip


if __name__ == "__main__":
    main()
