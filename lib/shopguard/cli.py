"""The command line of every job, declared once: its options, the setting each one overrides, and the checks
`submit.sh` runs before a JVM starts.

    python -m shopguard.cli submit-args JOB [args]   spark-submit options, or exit 2 with the reason
    python -m shopguard.cli help JOB                 the job's usage
    python -m shopguard.cli models [args]            model versions with mode, date, thresholds, metrics
    python -m shopguard.cli promote VERSION|--rollback  change the champion (no args: the record)
    python -m shopguard.cli runs [args]              past job runs and their outcome

Nothing here imports Spark or Keras, so a bad argument is answered in well under a second.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, get_args

from shopguard.config import CHECKOUT, DEFAULT_CONF_DIR, ConfigError, Mode, Settings, load_settings
from shopguard.errors import ExitCode

JOBS_DIR = CHECKOUT / "jobs"
MODES: tuple[str, ...] = get_args(Mode)


def parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date; expected YYYY-MM-DD") from None


@dataclass(frozen=True)
class Option:
    """One job option; `setting` is the section.key it overrides when given (None: the job's own)."""

    flag: str
    setting: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


DATE = Option("--date", None, {"type": parse_date, "required": True,
                               "help": "snapshot date, YYYY-MM-DD (UTC day, inclusive)"})  # fmt: skip

JOB_OPTIONS: dict[str, tuple[Option, ...]] = {
    "generate": (
        Option("--users", "generate.users", {"type": int, "help": "users to simulate"}),
        Option("--days", "generate.days", {"type": int, "help": "days to simulate, ending on --end-date"}),
        Option("--end-date", "generate.end_date", {"type": parse_date, "help": "last simulated day (default: yesterday)"}),
        Option("--seed", "generate.seed", {"type": int, "help": "random seed"}),
    ),
    "features": (
        DATE,
        Option("--allow-empty", "validation.allow_empty", {"action": "store_const", "const": True,
               "help": "an input table without rows for the date is expected: write an empty snapshot"}),
    ),
    "train": (DATE, Option("--mode", "model.mode", {"choices": MODES, "help": "model.mode"})),
    "score": (
        DATE,
        Option("--model-version", "scoring.model_version",
               {"help": "model to use (default: scoring.model_version, else the newest)"}),
    ),
    "summary": (DATE,),
    "evaluate": (
        DATE,
        Option("--scores-table", None, {"action": "append", "help": "scores table(s) to evaluate (default: scores)"}),
        Option("--against", "evaluation.against", {"choices": ["labels", "truth"], "help": "evaluation.against"}),
        Option("--report", None, {"help": "HTML file to write (default: evaluation.report_dir/evaluation-DATE-RUN.html)"}),
    ),
    "label": (
        Option("--verdicts", None, {"required": True,
               "help": "CSV file of verdicts: user_id,label (0 or 1),anomaly_type[,labelled_at]"}),
    ),
    "nightly": (
        Option("--date", None, {"type": parse_date, "help": "the night to run: snapshot date YYYY-MM-DD"}),
        Option("--from", None, {"type": parse_date, "dest": "first", "help": "first night of a backfill (with --to)"}),
        Option("--to", None, {"type": parse_date, "dest": "last",
               "help": "last night of a backfill; run again, it skips the nights that completed"}),
        Option("--train", "nightly.train", {"choices": ["weekly", "drift", "never"], "help": "nightly.train"}),
    ),
    "maintenance": (
        Option("--retention-hours", "maintenance.retention_hours", {"type": int, "help": "maintenance.retention_hours"}),
        Option("--dry-run", None, {"action": "store_true", "help": "list the files, delete nothing"}),
    ),
}  # fmt: skip


def _common_parser(description: str | None, prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--profile",
        default=os.environ.get("SHOPGUARD_PROFILE", "local"),
        help="conf/profiles/<profile>.yml to use (default: local, or $SHOPGUARD_PROFILE)",
    )
    parser.add_argument(
        "--conf-dir",
        default=os.environ.get("SHOPGUARD_CONF_DIR") or str(DEFAULT_CONF_DIR),
        help="the configuration folder (default: the repository's conf/, or $SHOPGUARD_CONF_DIR)",
    )
    parser.add_argument("--conf-file", action="append", default=[], help="extra YAML merged over conf/")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a setting: --set model.epochs=5",
    )
    parser.add_argument("--master", help="Spark master (overrides spark.master)")
    parser.add_argument("--log-file", help="also write the log to this file")
    return parser  # fmt: skip


def job_description(job: str) -> str | None:
    """The job file's docstring, read without importing it (the job imports Spark)."""
    path = JOBS_DIR / f"{job}.py"
    return ast.get_docstring(ast.parse(path.read_text())) if path.exists() else None


def job_parser(job: str, description: str | None = None) -> argparse.ArgumentParser:
    if job not in JOB_OPTIONS:
        raise ConfigError(f"unknown job {job!r}; expected one of {sorted(JOB_OPTIONS)}")
    parser = _common_parser(description or job_description(job), prog=f"submit.sh {job}")
    for option in JOB_OPTIONS[job]:
        parser.add_argument(option.flag, **option.kwargs)
    return parser


def settings_from_args(job: str, args: argparse.Namespace) -> Settings:
    """Settings from conf/ and the command line: --set overrides, then the job's own flags that override
    a setting (a flag left out overrides nothing)."""
    overrides = list(args.overrides)
    if args.master:
        overrides.append(f"spark.master={args.master}")
    for option in JOB_OPTIONS[job]:
        if option.setting is None:
            continue
        value = getattr(args, option.kwargs.get("dest") or option.flag.lstrip("-").replace("-", "_"))
        if value is not None:
            overrides.append(f"{option.setting}={value}")
    return load_settings(args.profile, conf_files=args.conf_file, overrides=overrides, conf_dir=args.conf_dir)


def parse(job: str, argv: Sequence[str] | None, description: str | None = None):
    """A job's arguments and its validated settings; argparse exits 2 on a bad argument."""
    parser = job_parser(job, description)
    args = parser.parse_args(argv)
    if job == "nightly":
        _check_nights(parser, args)
    if args.log_file:
        from shopguard.runtime import add_log_file

        add_log_file(args.log_file)
    settings = settings_from_args(job, args)
    logging.getLogger().setLevel(settings.logging.level)
    return args, settings


def _check_nights(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """One night (--date) or a backfill (--from and --to, in order), never both."""
    if (args.date is None) == (args.first is None and args.last is None):
        parser.error("give --date D for one night, or --from D1 --to D2 for a backfill")
    if args.date is None and (args.first is None or args.last is None or args.first > args.last):
        parser.error("a backfill needs --from D1 --to D2 with D1 <= D2")


def submit_args(job: str, argv: Sequence[str]) -> list[str]:
    """spark-submit options for `job` run with `argv`, after checking every argument and setting."""
    from shopguard.runtime import spark_conf

    _, settings = parse(job, argv)
    if settings.spark.conf.get("spark.submit.deployMode", "client") != "client":
        raise ConfigError(
            "spark.submit.deployMode cluster is not supported: the driver reads conf/, trains the model and "
            "commits to the Delta log where submit.sh runs; use client mode (the default)"
        )
    options = ["--master", settings.spark.master, "--name", f"{settings.spark.app_name}-{job}"]
    for key, value in spark_conf(settings.spark, settings.storage, settings.catalog).items():
        options += ["--conf", f"{key}={value}"]
    return options


# --------------------------------------------------------------------------- listings (no Spark)


def list_models(settings: Settings) -> list[dict[str, Any]]:
    """Every model version, newest first, with what an operator needs to pick one."""
    from shopguard import champion
    from shopguard.registry import describe_versions

    root = settings.tables.path("models")
    deciding = champion.current(root)
    return [{**row, "champion": row["version"] == deciding} for row in describe_versions(root)]


def promote_command(
    settings: Settings, version: str | None, rollback: bool, reason: str | None
) -> list[dict[str, Any]]:
    """`./submit.sh promote [VERSION | --rollback]`: the record after any change, newest first."""
    from shopguard import champion

    root = settings.tables.path("models")
    if rollback:
        champion.rollback(root, reason or "rolled back by hand")
    elif version:
        champion.promote(root, version, "manual", reason or "promoted by hand")
    return champion.describe(root)


def list_runs(settings: Settings, last: int) -> list[dict[str, Any]]:
    from shopguard.runlog import read_runs

    return read_runs(settings.tables.path("runs"), last)


def _print_models(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("no model versions")
    for row in rows:
        mark = "*" if row.get("champion") else " "
        if "problem" in row:
            print(f"{row['version']}  UNUSABLE: {row['problem']}")
            continue
        t, m = row["thresholds"], row["metrics"]
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in m.items())
        alert, block = t.get("alert", float("nan")), t.get("block", float("nan"))
        print(f"{mark} {row['version']}  mode {row['mode']}  trained for {row['snapshot_date']}  "
              f"alert >= {alert:.4g}  block >= {block:.4g}  {metrics}")  # fmt: skip


def _print_promotions(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("no promotions recorded: the newest model version decides")
    for r in rows:
        compared = ", ".join(f"{k} {v:.3f}" for k, v in r["metrics"].items())
        print(f"{r['promoted_at'][:19]}  {r['kind']:<9} {r['model_version']}  (was {r['previous']})  {r['reason']}"
              + (f"  [{compared}]" if compared else ""))  # fmt: skip


def _print_runs(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("no runs recorded")
    for r in rows:
        print(f"{r['started_at'][:19]}  {r['job']:<12} {r.get('date') or '':<10}  exit {r['exit_code']} "
              f"{r['outcome']:<8} {r['seconds']:>7.1f} s  {r['run_id']}  {r.get('message') or ''}")  # fmt: skip


def main(argv: Sequence[str]) -> int:
    if not argv or argv[0] not in ("submit-args", "help", "models", "runs", "promote"):
        print(__doc__, file=sys.stderr)
        return ExitCode.USAGE
    command, rest = argv[0], list(argv[1:])
    try:
        if command in ("submit-args", "help"):
            if not rest:
                raise ConfigError(f"{command} needs a job name; expected one of {sorted(JOB_OPTIONS)}")
            if command == "help":
                job_parser(rest[0]).print_help()
                return ExitCode.OK
            print("\n".join(submit_args(rest[0], rest[1:])))
            return ExitCode.OK
        parser = _common_parser(f"shopguard {command}", prog=f"submit.sh {command}")
        parser.add_argument("--last", type=int, default=30, help="how many (runs only)")
        parser.add_argument("--json", action="store_true", help="JSON lines instead of a table")
        if command == "promote":
            parser.add_argument("version", nargs="?", help="the model version to make the champion")
            parser.add_argument("--rollback", action="store_true", help="undo the newest promotion")
            parser.add_argument("--reason", help="why, for the record")
        args = parser.parse_args(rest)
        settings = load_settings(args.profile, args.conf_file, args.overrides, args.conf_dir)
        if command == "promote":
            if args.version and args.rollback:
                raise ConfigError("give a VERSION to promote or --rollback, not both")
            rows, show = (
                promote_command(settings, args.version, args.rollback, args.reason),
                _print_promotions,
            )
        elif command == "models":
            rows, show = list_models(settings), _print_models
        else:
            rows, show = list_runs(settings, args.last), _print_runs
        if args.json:
            print("\n".join(json.dumps(r, default=str) for r in rows))
        else:
            show(rows)
        return ExitCode.OK
    except ConfigError as exc:
        print(f"shopguard: ConfigError: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except (ValueError, FileNotFoundError) as exc:  # promote: an unknown version, nothing to roll back
        print(f"shopguard: {type(exc).__name__}: {exc}", file=sys.stderr)
        return ExitCode.INPUT


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
