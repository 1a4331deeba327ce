"""Speed of every nightly step, each against a single-node reference measured in the same run.

    .venv/bin/python bench/speed.py                          # 1M, 3M and 10M events (~50 min on 2 cores)
    .venv/bin/python bench/speed.py --sizes 1M --runs 2 --json speed.json

Per size (events over 30 days; ~92 events per user), the data is generated once under --root and kept
between runs. Each step runs as a user runs it (`./submit.sh <job>`, its own process, Spark local mode as
conf/ sets it), timed from start to exit with its peak resident memory (the largest process of its tree:
the driver's JVM or Python), --runs times, alternating with its reference, and the medians are reported.
References, each its own process over the same inputs:

* features: DuckDB over the same committed Parquet files (listed by the Delta log): the same validation
  rules, duplicates dropped, and the same feature expressions (shopguard.features, translated to DuckDB's
  dialect); its output is compared with the job's, column by column;
* train: `shopguard.model.train` on the same NumPy matrix (Keras fit, detectors, thresholds; no Spark),
  as many users as the job trains on (model.max_training_rows);
* score: `shopguard.scoring.score_frame` (the function the pandas UDF applies) on the whole snapshot at
  once, with the same model. Besides the whole process, the score job's scoring stage (the pandas UDF and
  the write, from its log line) is compared with that call alone (model loaded): throughput_share is the
  job's users per second over the direct call's;
* generate and evaluate have none.

Then the night as it is scheduled: `./submit.sh nightly --train never` (features, the drift measure, score,
evaluate and monitoring in one Spark application; the champion is the train step's model, the newest),
beside the sum of the separate features, score and evaluate jobs' medians; its steps' seconds come from
its log.

Prints a Markdown table (seconds, reference, ratio, microseconds per event, peak MiB) and writes --json
FILE: {"<size>": {"<step>": {"seconds", "reference_seconds", "ratio", "peak_rss_mib", "rows", "runs",
"reference_runs"[, "scoring_stage"]}}}, and for "nightly" "separate_jobs_seconds" and "steps" instead of a
reference. The model mode is pinned to autoencoder so that job and reference train the same thing. DuckDB
is a dev dependency.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DAY = date(2026, 11, 22)
EVENTS_PER_USER = 92  # clicks + orders per user over 30 days, as the generator makes them (measured)
STEPS = ("generate", "features", "train", "score", "evaluate", "nightly")
# The night as scheduled, without training: the train step's model, the newest, is the champion.
STEP_ARGS = {"nightly": ("--train", "never")}
SEPARATE_JOBS = ("features", "score", "evaluate")  # what one night does besides drift and monitoring


def parse_size(text: str) -> int:
    scale = {"K": 1_000, "M": 1_000_000}.get(text[-1].upper(), 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


# --------------------------------------------------------------------------- measuring a process


def measured(command: list[str], log: Path) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB of the process tree's largest process, what it printed); a failure stops
    the bench."""
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "TF_CPP_MIN_LOG_LEVEL": "2"}
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(command)}\n")
        out.flush()
        start = out.tell()
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed (exit {os.waitstatus_to_exitcode(status)}); see {log}")
    with log.open() as written:
        written.seek(start)
        return seconds, usage.ru_maxrss / 1024, written.read()


def job(name: str, root: Path, *args: str) -> list[str]:
    return ["./submit.sh", name, "--set", f"tables.root={root}", "--set", "model.mode=autoencoder", *args]


def reference(name: str, root: Path) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--reference", name, "--root", str(root)]


# --------------------------------------------------------------------------- references


def committed_files(path: Path) -> list[str]:
    """The data files of a Delta table's current version, as the log lists them (never a directory scan)."""
    from deltalake import DeltaTable

    return [uri.removeprefix("file://") for uri in DeltaTable(str(path)).file_uris()]


def duckdb_features(root: Path) -> None:
    """Validation, duplicates and the per-user features of DAY in DuckDB; writes reference_features.parquet."""
    import duckdb

    from shopguard import features as f
    from shopguard.config import load_settings
    from shopguard.features import FeatureSpec

    settings = load_settings()
    spec = FeatureSpec.from_settings(settings.features, settings.validation)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    first, last = f.input_date_range(DAY, spec.lifetime_days)
    for table, partition in (("clicks", "event_date"), ("transactions", "order_date")):
        files = committed_files(root / "raw" / table)
        con.execute(
            f"CREATE VIEW raw_{table} AS SELECT * FROM read_parquet({files!r}, hive_partitioning = true) "
            f"WHERE {partition} BETWEEN DATE '{first}' AND DATE '{last}'"
        )
    con.execute(_valid_sql("clicks", settings.validation, _CLICK_CHECKS))
    con.execute(_valid_sql("transactions", settings.validation, _ORDER_CHECKS))
    counts = {
        t: con.execute(f"SELECT count(*) FROM valid_{t}").fetchone()[0] for t in ("clicks", "transactions")
    }
    con.execute(f"COPY ({_features_sql(spec)}) TO '{root / 'reference_features.parquet'}' (FORMAT parquet)")
    print(json.dumps(counts))


_CLICK_CHECKS = [
    "user_id IS NULL", "event_time IS NULL", "event_type IS NULL", "event_type NOT IN ({event_types})",
    "rating IS NOT NULL AND rating NOT BETWEEN {rating_min} AND {rating_max}",
    "event_type = 'review' AND rating IS NULL", "dwell_ms < 0",
]  # fmt: skip
_ORDER_CHECKS = [
    "order_id IS NULL", "user_id IS NULL", "order_time IS NULL", "amount IS NULL", "quantity IS NULL",
    "status IS NULL", "isnan(amount) OR isinf(amount) OR amount < 0", "amount > {max_amount}",
    "quantity <= 0", "quantity > {max_quantity}", "status NOT IN ({statuses})",
    "currency IS NOT NULL AND currency NOT IN ({currencies})",
]  # fmt: skip


def _valid_sql(table: str, rules: Any, checks: list[str]) -> str:
    """Normalised rows that pass every rule of `table`, exact duplicates dropped (orders: latest row)."""
    from shopguard import schemas

    ids = schemas.ID_COLUMNS[table]
    columns = schemas.CANONICAL[table].fieldNames()
    clean = {c: f"nullif(lower(trim({c})), '')" for c in ids}
    clean.update({"ip": "trim(ip)"})
    if table == "clicks":
        clean["event_type"] = "nullif(lower(trim(event_type)), '')"
    else:
        clean.update(status="nullif(lower(trim(status)), '')", currency="upper(trim(currency))",
                     payment_method="nullif(lower(trim(payment_method)), '')")  # fmt: skip
    time_column = "event_time" if table == "clicks" else "order_time"
    strings = [f.name for f in schemas.CANONICAL[table].fields if f.dataType.simpleString() == "string"]

    def listed(values: Any) -> str:
        return ", ".join(f"'{v}'" for v in values)

    values = {"rating_min": rules.rating_min, "rating_max": rules.rating_max, "max_amount": rules.max_amount,
              "max_quantity": rules.max_quantity, "currencies": listed(sorted(rules.currency_rates)),
              "event_types": listed(schemas.EVENT_TYPES), "statuses": listed(schemas.ORDER_STATUSES)}  # fmt: skip
    bad = [c.format(**values) for c in checks] + [f"length({s}) > {rules.max_string_length}" for s in strings]
    latest = datetime.now(UTC) + timedelta(minutes=rules.max_future_minutes)
    bad += [f"{time_column} < TIMESTAMPTZ '{rules.min_event_date} 00:00:00+00'",
            f"{time_column} > TIMESTAMPTZ '{latest.isoformat()}'"]  # fmt: skip
    select = ", ".join(f"{clean.get(c, c)} AS {c}" for c in columns)
    distinct = f"SELECT DISTINCT * FROM (SELECT {select} FROM raw_{table}) WHERE NOT coalesce(" + (
        " OR ".join(f"({b})" for b in bad) + ", false)"
    )
    if table == "transactions":
        distinct = (
            f"SELECT * EXCLUDE (_n) FROM (SELECT *, row_number() OVER (PARTITION BY order_id ORDER BY "
            f"order_time DESC, CASE status WHEN 'refunded' THEN 3 WHEN 'cancelled' THEN 2 ELSE 1 END DESC) "
            f"AS _n FROM ({distinct})) WHERE _n = 1"
        )
    return f"CREATE TABLE valid_{table} AS {distinct}"


def _duckdb(expression: str) -> str:
    """Spark SQL as shopguard.features writes it -> DuckDB's dialect (the few constructs it uses)."""
    expression = re.sub(r"size\(collect_set\(", "count(DISTINCT (", expression)
    expression = re.sub(r"(?<![\w.])(\d+(?:\.\d+)?(?:e\d+)?)D\b", r"(\1::DOUBLE)", expression)
    expression = expression.replace("unix_micros(", "epoch_us(").replace("to_date(", "CAST_DATE(")
    expression = re.sub(r"CAST_DATE\((\w+)\)", r"CAST(\1 AS DATE)", expression)
    return expression.replace("TIMESTAMP '", "TIMESTAMPTZ '")


def _features_sql(spec: Any) -> str:
    from shopguard import features as f

    cutoff = f.cutoff_of(DAY)
    start = {w: f._ts(cutoff - timedelta(days=w)) for w in (*spec.windows_days, spec.lifetime_days)}
    s = {k: _duckdb(v) for k, v in start.items()}
    end, life, recent = _duckdb(f._ts(cutoff)), s[spec.lifetime_days], s[spec.max_window]
    rates = " ".join(f"WHEN '{c}' THEN {float(r)}" for c, r in sorted(spec.currency_rates.items()))

    def select(features: list[tuple[str, Any]]) -> str:
        """Each feature as its plain SQL definition (a distinct count as one count(DISTINCT ...))."""
        return ", ".join(
            f'{_duckdb(sql if isinstance(sql, str) else sql.sql)} AS "{name}"' for name, sql in features
        )

    windows = spec.windows_days
    item_counts = ", ".join(f"count_if(event_time >= {s[w]}) AS n_{w}" for w in windows)
    item_shares = select([(f"top_item_share_{w}d", f._ratio(f"max(n_{w})", f"sum(n_{w})")) for w in windows])
    plural = {"device": "devices", "ip": "ips", "address": "addresses"}
    breadth = [(f"distinct_{plural[k]}_{w}d", f._count(f"kind = '{k}' AND last_seen >= {start[w]}"))
               for k in ("device", "ip") for w in windows]  # fmt: skip
    novelty = [(f"new_{plural[k]}_{w}d", f._count(f"kind = '{k}' AND first_seen >= {start[w]}"))
               for k in plural for w in windows if w < spec.max_window]  # fmt: skip
    sharing = [(f"shared_{k}_users_{spec.max_window}d",
                f"max(CASE WHEN kind = '{k}' AND last_seen >= {start[spec.max_window]} THEN users - 1 END)")
               for k in plural]  # fmt: skip
    flags = ", ".join(f"{_duckdb(sql)} AS {name}" for name, sql in f.click_flags(spec, start))
    days = spec.lifetime_days
    lifetime = (
        f"least(CASE WHEN signup_time IS NOT NULL THEN (epoch_us({end}) - epoch_us(signup_time)) / 1e6 / 86400 "
        f"ELSE {days} END, {days}) AS account_age_days, greatest(least(CASE WHEN signup_time IS NOT NULL AND "
        f"first_order_time IS NOT NULL THEN (epoch_us(first_order_time) - epoch_us(signup_time)) / 1e6 / 86400 "
        f"ELSE {days} END, {days}), 0) AS days_signup_to_first_order"
    )
    return f"""
    WITH life_clicks AS (SELECT * FROM valid_clicks WHERE event_time >= {life} AND event_time < {end}),
    life_orders AS (SELECT *, amount * coalesce(CASE currency {rates} END, 1) AS amount_base
                    FROM valid_transactions WHERE order_time >= {life} AND order_time < {end}),
    recent_clicks AS (SELECT * FROM life_clicks WHERE event_time >= {recent}),
    recent_orders AS (SELECT * FROM life_orders WHERE order_time >= {recent}),
    timed AS (SELECT *, (epoch_us(event_time) - epoch_us(prev_event_time)) / 1e6 AS gap_s, {flags} FROM (
                SELECT *, lag(event_time) OVER (PARTITION BY user_id ORDER BY event_time) AS prev_event_time
                FROM recent_clicks)),
    users AS (SELECT user_id FROM recent_clicks UNION SELECT user_id FROM recent_orders),
    clicks_agg AS (SELECT user_id, {select(f._click_aggregates(spec, start))} FROM timed GROUP BY user_id),
    per_item AS (SELECT user_id, item_id, {item_counts} FROM recent_clicks
                 WHERE item_id IS NOT NULL AND event_type IN ('page_view', 'add_to_cart') GROUP BY ALL),
    items AS (SELECT user_id, {item_shares} FROM per_item GROUP BY user_id),
    orders_agg AS (SELECT user_id, {select(f._order_aggregates(spec, start))} FROM recent_orders GROUP BY user_id),
    usage AS (SELECT user_id, event_time AS t, 'device' AS kind, device_id AS entity FROM life_clicks
              UNION ALL SELECT user_id, event_time, 'ip', ip FROM life_clicks
              UNION ALL SELECT user_id, order_time, 'device', device_id FROM life_orders
              UNION ALL SELECT user_id, order_time, 'ip', ip FROM life_orders
              UNION ALL SELECT user_id, order_time, 'address', shipping_address_id FROM life_orders),
    per_entity AS (SELECT *, count_if(last_seen >= {recent}) OVER (PARTITION BY kind, entity) AS users FROM (
                     SELECT user_id, kind, entity, min(t) AS first_seen, max(t) AS last_seen FROM usage
                     WHERE entity IS NOT NULL GROUP BY ALL)),
    entities AS (SELECT user_id, {select(breadth + novelty + sharing)} FROM per_entity GROUP BY user_id),
    lifetime AS (SELECT user_id, {lifetime} FROM
                   (SELECT user_id, min(CASE WHEN event_type = 'signup' THEN event_time END) AS signup_time
                    FROM life_clicks GROUP BY user_id)
                   FULL OUTER JOIN (SELECT user_id, min(order_time) AS first_order_time FROM life_orders
                                    GROUP BY user_id) USING (user_id)),
    joined AS (SELECT * FROM users LEFT JOIN clicks_agg USING (user_id) LEFT JOIN items USING (user_id)
               LEFT JOIN orders_agg USING (user_id) LEFT JOIN entities USING (user_id)
               LEFT JOIN lifetime USING (user_id))
    SELECT *, {select(f._cross_source_features(spec))} FROM joined"""


def _features_matrix(root: Path) -> Any:
    """The job's features of DAY as pandas (through delta-rs: no Spark in the references)."""
    from deltalake import DeltaTable

    frame = DeltaTable(str(root / "features")).to_pandas()
    return frame[frame["snapshot_date"] == DAY].reset_index(drop=True)


def keras_train(root: Path) -> None:
    import numpy as np

    from shopguard.config import load_settings
    from shopguard.model import TrainingParams, train

    model = load_settings().model
    frame = _features_matrix(root)
    if len(frame) > model.max_training_rows:  # as many users as the job's sample, so the two do equal work
        frame = frame.sample(n=model.max_training_rows, random_state=model.seed)
    names = [c for c in frame.columns if c not in ("user_id", "snapshot_date")]
    params = TrainingParams.from_settings(model, mode="autoencoder")
    train(frame[names].to_numpy(np.float32), frame["user_id"].to_numpy(), names, params)


def keras_score(root: Path) -> None:
    """Prints the seconds of the scoring call itself (model loaded, features in memory): the throughput the
    score job's scoring stage is compared with."""
    from shopguard.config import load_settings
    from shopguard.registry import load_model
    from shopguard.scoring import ScoringPlan, score_frame

    stored = load_model(str(root / "models"))
    settings = load_settings().scoring
    plan = ScoringPlan.from_settings(stored.model_bytes, stored.metadata, settings)
    frame = _features_matrix(root)
    warm_up = frame.head(1)  # loads the model, as each Python worker does once
    score_frame(warm_up, plan, datetime.now(UTC), DAY)
    started = time.perf_counter()
    score_frame(frame, plan, datetime.now(UTC), DAY)
    print(json.dumps({"scoring_seconds": time.perf_counter() - started, "users": len(frame)}))


REFERENCES = {"features": duckdb_features, "train": keras_train, "score": keras_score}


# --------------------------------------------------------------------------- the run


def compare_features(root: Path) -> str:
    """How far DuckDB's features are from the job's: the trust in the features ratio rests on this."""
    import numpy as np
    import pandas as pd

    ours = _features_matrix(root).set_index("user_id").drop(columns="snapshot_date")
    theirs = pd.read_parquet(root / "reference_features.parquet").set_index("user_id")
    theirs = theirs.reindex(ours.index)[ours.columns].fillna(0).astype(float)
    close = np.isclose(ours.to_numpy(float), theirs.to_numpy(float), rtol=1e-6, atol=1e-6)
    bad_columns = [c for c, ok in zip(ours.columns, close.all(axis=0), strict=True) if not ok]
    return (f"DuckDB reference: {len(theirs.index.intersection(ours.index))} of {len(ours)} users, "
            f"{len(ours.columns) - len(bad_columns)} of {len(ours.columns)} columns equal on every user"
            + (f"; differing: {bad_columns[:8]} ({(~close).sum()} cells)" if bad_columns else ""))  # fmt: skip


def table_rows(path: Path) -> int:
    """Rows in the table's current version (from the files it lists), whatever commits made it: summing each
    commit's rows counted a rerun of generate twice (the 10 M tables' two overwrites, 20.7 M for 10.35 M)."""
    from deltalake import DeltaTable

    return int(DeltaTable(str(path)).to_pyarrow_dataset().count_rows())


_SCORED = re.compile(r"scored (\d+) users of \S+ with \S+ in ([\d.]+) s")
_NIGHT_STEP = re.compile(r"night \S+: ([\w ]+) done in ([\d.]+) s")


def run_size(events: int, root: Path, log: Path, runs: int = 1) -> dict[str, dict[str, Any]]:
    """Each step `runs` times, alternating with its reference (the machine's noise hits both alike); the
    medians, the peak of the largest run, and every run's seconds."""
    users = max(events // EVENTS_PER_USER, 100)
    out: dict[str, dict[str, Any]] = {}
    generated = root / "generate.json"
    if not generated.exists():  # kept between runs: generating is not what a night does
        seconds, peak, _ = measured(job("generate", root, "--set", f"generate.users={users}", "--set",
                                        "generate.days=30", "--end-date", DAY.isoformat()), log)  # fmt: skip
        generated.write_text(json.dumps({"seconds": seconds, "peak_rss_mib": peak}))
    events_in = table_rows(root / "raw" / "clicks") + table_rows(root / "raw" / "transactions")
    out["generate"] = {**json.loads(generated.read_text()), "rows": events_in, "reference_seconds": None,
                       "ratio": None}  # fmt: skip
    for step in STEPS[1:]:
        timed, refs, peaks, stages, night_steps = [], [], [], [], []
        for _ in range(runs):
            seconds, peak, printed = measured(
                job(step, root, "--date", DAY.isoformat(), *STEP_ARGS.get(step, ())), log
            )
            timed.append(seconds)
            peaks.append(peak)
            if step in REFERENCES:
                ref_seconds, _, ref_printed = measured(reference(step, root), log)
                refs.append(ref_seconds)
            if step == "score":  # the scoring stage beside the direct call on the same matrix
                scored = _SCORED.search(printed)
                direct = json.loads(ref_printed.strip().splitlines()[-1])
                if scored:
                    stages.append((int(scored[1]), float(scored[2]), direct["scoring_seconds"]))
            if step == "nightly":  # its steps' seconds, from the lines its clock writes
                night_steps.append({name: float(s) for name, s in _NIGHT_STEP.findall(printed)})
        seconds, ref = statistics.median(timed), statistics.median(refs) if refs else None
        out[step] = {"seconds": round(seconds, 1), "peak_rss_mib": round(max(peaks)), "rows": events_in,
                     "reference_seconds": None if ref is None else round(ref, 1),
                     "ratio": None if ref is None else round(seconds / ref, 2),
                     "runs": [round(t, 1) for t in timed], "reference_runs": [round(r, 1) for r in refs]}  # fmt: skip
        if stages:
            stage, direct = statistics.median(s[1] for s in stages), statistics.median(s[2] for s in stages)
            out[step]["scoring_stage"] = {
                "users": stages[0][0], "seconds": round(stage, 2), "direct_seconds": round(direct, 2),
                "throughput_share": round(direct / stage, 3),  # the job's users/s over the direct call's
            }  # fmt: skip
        if step == "features":
            out[step]["check"] = compare_features(root)
        if night_steps:
            out[step]["steps"] = {name: round(statistics.median(n[name] for n in night_steps), 1)
                                  for name in night_steps[0]}  # fmt: skip
            out[step]["separate_jobs_seconds"] = round(sum(out[s]["seconds"] for s in SEPARATE_JOBS), 1)
    return out


def markdown(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = ["| events | step | seconds | reference s | ratio | µs per event | peak MiB |", "|---" * 7 + "|"]
    for size, steps in results.items():
        for step, r in steps.items():
            ref = "" if r["reference_seconds"] is None else f"{r['reference_seconds']:.1f}"
            ratio = "" if r["ratio"] is None else f"{r['ratio']:.1f}x"
            per_event = 1e6 * r["seconds"] / max(r["rows"], 1)
            lines.append(f"| {size} | {step} | {r['seconds']:.1f} | {ref} | {ratio} | {per_event:.1f} | "
                         f"{r['peak_rss_mib']:.0f} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1M,3M,10M", help="events per size, e.g. 1M,3M,10M")
    parser.add_argument("--root", type=Path, default=ROOT / "data" / "bench-speed")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--runs", type=int, default=1, help="runs of each step and reference (medians)")
    parser.add_argument("--reference", choices=sorted(REFERENCES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.reference:  # one reference, in its own process (see measured)
        REFERENCES[args.reference](args.root)
        return
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for size in args.sizes.split(","):
        root = args.root / size
        root.mkdir(parents=True, exist_ok=True)
        results[size] = run_size(parse_size(size), root, root / "bench.log", args.runs)
        for step, r in results[size].items():
            print(f"{size} {step}: {json.dumps(r)}", file=sys.stderr, flush=True)
    print(markdown(results))
    for size, steps in results.items():
        print(f"{size}: {steps['features'].get('check', '')}")
        night = steps["nightly"]
        print(f"{size}: nightly in one application {night['seconds']} s against {night['separate_jobs_seconds']} s "
              f"for the separate {', '.join(SEPARATE_JOBS)} jobs; its steps (s): {json.dumps(night['steps'])}")  # fmt: skip
        if "scoring_stage" in steps["score"]:
            stage = steps["score"]["scoring_stage"]
            print(
                f"{size}: scoring stage {stage['users']} users in {stage['seconds']} s against the direct call's "
                f"{stage['direct_seconds']} s: {stage['throughput_share']:.0%} of its throughput"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
