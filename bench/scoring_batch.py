"""How `scoring.batch_rows` (Arrow's records per batch in the score job's pandas UDF) trades speed for memory.

    .venv/bin/python bench/scoring_batch.py --root data/bench-speed/1M          # after bench/speed.py
    .venv/bin/python bench/scoring_batch.py --root DIR --sizes 1024,4096,16384 --json out.json

Each batch size runs in its own process as a Python worker does: TensorFlow on one thread, the newest model
under DIR/models loaded once, then `shopguard.scoring.score_frame` (the function the UDF applies) on every
feature row of the snapshot in batches of that size, twice (the second timed). Prints microseconds per row,
the ratio to the configured size's time in the same run, and each process's peak resident memory: what
one Python worker of the score job needs on top of the executor.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from speed import DAY, ROOT, _features_matrix  # the same snapshot as bench/speed.py's references


def one_size(root: Path, batch_rows: int) -> None:
    """In a fresh process: print {"seconds", "rows", "peak_rss_mib"} of scoring the snapshot in batches."""
    import resource

    from shopguard.config import load_settings
    from shopguard.registry import load_model
    from shopguard.scoring import ScoringPlan, score_frame

    stored = load_model(str(root / "models"))
    s = load_settings().scoring
    plan = ScoringPlan.from_settings(stored.model_bytes, stored.metadata, s)
    frame = _features_matrix(root)
    now = datetime.now(UTC)
    seconds = 0.0
    for _ in range(2):  # the first pass loads the model and traces the graph, as a worker's first batch does
        started = time.perf_counter()
        for i in range(0, len(frame), batch_rows):
            score_frame(frame.iloc[i : i + batch_rows], plan, now, DAY)
        seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "rows": len(frame), "peak_rss_mib": peak, "mode": plan.mode}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, required=True, help="tables.root with features and a model")
    parser.add_argument("--sizes", default="512,1024,2048,4096,8192,16384")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        one_size(args.root, args.one)
        return
    from shopguard.config import load_settings

    configured = load_settings().scoring.batch_rows
    sizes = sorted({int(v) for v in args.sizes.split(",")} | {configured})
    env = {
        **os.environ,
        "TF_NUM_INTRAOP_THREADS": "1",
        "TF_NUM_INTEROP_THREADS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    results = {}
    for size in sizes:
        command = [sys.executable, __file__, "--root", str(args.root), "--one", str(size)]
        printed = subprocess.run(
            command, env=env, cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout
        results[size] = json.loads(printed.strip().splitlines()[-1])
        print(f"batch_rows {size}: {json.dumps(results[size])}", file=sys.stderr, flush=True)
    reference = results[configured]["seconds"]
    print(f"model mode {results[configured]['mode']}, {results[configured]['rows']} users, one thread")
    print("| batch_rows | µs per row | time vs configured | worker peak MiB |\n|---|---|---|---|")
    for size, r in results.items():
        mark = " (configured)" if size == configured else ""
        print(f"| {size}{mark} | {1e6 * r['seconds'] / r['rows']:.0f} | {r['seconds'] / reference:.2f}x | "
              f"{r['peak_rss_mib']:.0f} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
