"""Unsupervised detection on data nobody here made: shopguard's scorer against PyOD's detectors.

    .venv/bin/python bench/external.py                       # ../shared/benchmarks/adbench, 3 seeds
    .venv/bin/python bench/external.py --data-dir DIR --json external.json --seeds 1

Every `.npz` file in --data-dir holds `X` (rows x features) and `y` (1 anomaly, 0 normal). Each detector
is fitted without labels on the whole of X and scores every row (the unsupervised protocol of ADBench);
the labels only measure ROC-AUC and PR-AUC. shopguard runs the model code the train and score jobs run
(`shopguard.model.train`, then `batch_scores`) with the default `model:` settings of conf/base, on the
matrix directly (no Spark). One configuration for every data set: nothing here is tuned per data set.
`--set section.key=value` (as the jobs take it, repeatable) measures another configuration the same way,
e.g. `--set model.trainings=5`; it is checked before any data set is read, and the JSON records it.

`--labelled SHARE` measures the modes that learn from analysts' verdicts on the same data (ADBench's
semi-supervised protocol, with verdicts of both kinds as investigations give them): per seed, a stratified
70/30 split; SHARE of the training split's anomalies are labelled anomalous (at least MIN_LABELLED) and as
many of its normal rows labelled normal, the other training rows unlabelled. Every detector fits on the
training split (the unsupervised ones without the labels) and scores the test split, where the figures are
measured. Detectors: shopguard's unsupervised default, its semi_supervised and classifier modes, the
gradient-boosted baseline of the evaluate job on the same labels (`gbt`), IsolationForest and ECOD. A set
with fewer than MIN_LABELLED anomalies in its training split is left out, and said so.

Data sets above --max-rows rows are subsampled (stratified, the same rows for every detector and seed) so
that the run takes minutes, not hours, on 2 cores. Prints a Markdown table (ROC-AUC and PR-AUC per data
set and detector, the mean, and the mean rank by ROC-AUC) and writes --json FILE:
{"datasets": {name: {detector: {"roc_auc": x, "pr_auc": y}}}, "mean": {detector: {...}}}.
PyOD is a benchmark-only dependency (pip install -e ".[bench]").
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from shopguard.config import ModelSettings

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "benchmarks" / "adbench"
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# (rows to fit on, their labels (1, 0 or NaN: unknown) or None, rows to score, seed) -> score per scored
# row, higher = more anomalous. The unsupervised protocol fits and scores the same rows, without labels.
Detector = Callable[[np.ndarray, "np.ndarray | None", np.ndarray, int], np.ndarray]
# Labelled anomalies (and normal rows) at least: the semi_supervised mode needs 5 of each to fit on once the
# validation rows (model.validation_fraction) are set aside, and stops the bench, naming it, where it has not.
MIN_LABELLED = 10
UNSUPERVISED = ("shopguard", "isolation_forest", "ecod", "copod", "hbos", "pca", "knn")
LABELLED = ("shopguard", "shopguard_semi", "shopguard_classifier", "gbt", "isolation_forest", "ecod")


# the detectors that are shopguard's own model, and the mode each trains
SHOPGUARD = {
    "shopguard": "autoencoder",
    "shopguard_semi": "semi_supervised",
    "shopguard_classifier": "classifier",
}


def shopguard_with(overrides: Sequence[str] = (), mode: str = "autoencoder") -> Detector:
    """The product's model in `mode` (the unsupervised default, or semi_supervised or classifier, which learn
    from the labels) with conf/base's `model:` settings (`overrides`, as `--set` gives them, merged over
    them). ConfigError, naming the setting, when the overrides are not valid: raised here, before any data
    set is read."""
    from shopguard.config import load_settings

    return _shopguard(load_settings(overrides=list(overrides)).model, mode)


def _shopguard(settings: ModelSettings, mode: str) -> Detector:
    """The model in `mode`, trained and applied exactly as the jobs do."""

    def shopguard(x: np.ndarray, labels: np.ndarray | None, x_score: np.ndarray, seed: int) -> np.ndarray:
        from shopguard.model import TrainingParams, batch_scores, train

        params = TrainingParams.from_settings(settings, seed=seed, mode=mode)
        names = [f"f{j}" for j in range(x.shape[1])]
        users = np.array([f"row-{i}" for i in range(len(x))], dtype=object)
        trained = train(x.astype(np.float32), users, names, params, labels if mode != "autoencoder" else None)
        return batch_scores(trained.model, trained.mode, x_score.astype(np.float32))[0]

    return shopguard


def _gbt(x: np.ndarray, labels: np.ndarray | None, x_score: np.ndarray, seed: int) -> np.ndarray:
    """The evaluate job's supervised baseline, on the same labelled and presumed-normal rows."""
    from shopguard.baselines import gradient_boosting

    if labels is None:
        raise ValueError("gbt learns from labels: run it with --labelled")
    scores = gradient_boosting(x, labels, x_score, seed=seed)
    if scores is None:
        raise ValueError("gbt: too few labelled rows")
    return scores


def _pyod(name: str, **kwargs) -> Detector:
    def detect(x: np.ndarray, labels: np.ndarray | None, x_score: np.ndarray, seed: int) -> np.ndarray:
        import importlib

        module, cls = {
            "IForest": ("pyod.models.iforest", "IForest"),
            "ECOD": ("pyod.models.ecod", "ECOD"),
            "COPOD": ("pyod.models.copod", "COPOD"),
            "HBOS": ("pyod.models.hbos", "HBOS"),
            "PCA": ("pyod.models.pca", "PCA"),
            "KNN": ("pyod.models.knn", "KNN"),
        }[name]
        model_class = getattr(importlib.import_module(module), cls)
        if "random_state" in model_class.__init__.__code__.co_varnames:
            kwargs["random_state"] = seed
        model = model_class(**kwargs)
        scaled = name in ("KNN", "PCA")
        model.fit(_standardised(x, x) if scaled else x)
        if x_score is x:  # the unsupervised protocol: the fitted rows' own scores
            return np.asarray(model.decision_scores_, dtype=np.float64)
        return np.asarray(
            model.decision_function(_standardised(x_score, x) if scaled else x_score), np.float64
        )

    return detect


def _standardised(x: np.ndarray, fitted: np.ndarray) -> np.ndarray:
    """Distance and projection detectors need comparable units (those of the rows they fit on); PyOD leaves
    that to the caller."""
    spread = fitted.std(axis=0)
    return (x - fitted.mean(axis=0)) / np.where(spread > 0, spread, 1.0)


OTHERS: dict[str, Detector] = {
    "gbt": _gbt,
    "isolation_forest": _pyod("IForest", n_estimators=100),
    "ecod": _pyod("ECOD"),
    "copod": _pyod("COPOD"),
    "hbos": _pyod("HBOS"),
    "pca": _pyod("PCA"),
    "knn": _pyod("KNN", n_neighbors=5),
}


def load(path: Path, max_rows: int) -> tuple[np.ndarray, np.ndarray]:
    data = np.load(path, allow_pickle=False)
    x, y = np.asarray(data["X"], dtype=np.float64), np.asarray(data["y"]).astype(int).ravel()
    x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    if len(x) > max_rows:  # stratified: the anomaly share stays what it was
        rng = np.random.default_rng(0)
        keep = np.concatenate(
            [
                rng.choice(np.flatnonzero(y == c), size=round(max_rows * (y == c).mean()), replace=False)
                for c in (0, 1)
            ]
        )
        x, y = x[np.sort(keep)], y[np.sort(keep)]
    return x, y


def labelled_split(y: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(training rows, their labels: 1, 0 or NaN) of a stratified 70/30 split, with `share` of the training
    anomalies (at least MIN_LABELLED) labelled anomalous and as many training normal rows labelled normal;
    None when the training split holds fewer than MIN_LABELLED anomalies."""
    rng = np.random.default_rng(seed)
    train = np.zeros(len(y), bool)
    for c in (0, 1):
        rows = np.flatnonzero(y == c)
        train[rng.choice(rows, size=round(0.7 * len(rows)), replace=False)] = True
    anomalies, normal = np.flatnonzero(train & (y == 1)), np.flatnonzero(train & (y == 0))
    if len(anomalies) < MIN_LABELLED:
        return None
    count = min(max(MIN_LABELLED, round(share * len(anomalies))), len(anomalies), len(normal))
    labels = np.full(len(y), np.nan)
    labels[rng.choice(anomalies, size=count, replace=False)] = 1.0
    labels[rng.choice(normal, size=count, replace=False)] = 0.0
    return train, labels[train]


def evaluate(
    files: list[Path], detectors: dict[str, Detector], seeds: list[int], max_rows: int, labelled: float = 0.0
) -> dict[str, dict[str, dict[str, float]]]:
    """ROC-AUC and PR-AUC per data set and detector, the means over `seeds`: on every row without labels
    (`labelled` 0), else on the test split of `labelled_split` (data sets it cannot label are left out)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    results: dict[str, dict[str, dict[str, float]]] = {}
    for path in files:
        x, y = load(path, max_rows)
        name = path.stem
        splits = {seed: labelled_split(y, labelled, seed) if labelled else None for seed in seeds}
        if labelled and any(split is None for split in splits.values()):
            print(f"{name:>22} {x.shape!s:>12}: left out, fewer than {MIN_LABELLED} anomalies to label in "
                  "its training split", file=sys.stderr, flush=True)  # fmt: skip
            continue
        results[name] = {}
        for detector, detect in detectors.items():
            started = time.perf_counter()
            runs = []
            for seed in seeds:
                split = splits[seed]
                if split is None:
                    scores, truth = detect(x, None, x, seed), y
                else:
                    train, labels = split
                    scores, truth = detect(x[train], labels, x[~train], seed), y[~train]
                scores = np.nan_to_num(scores, nan=np.nanmin(scores) if np.isfinite(scores).any() else 0.0)
                runs.append((roc_auc_score(truth, scores), average_precision_score(truth, scores)))
            roc, pr = np.mean(runs, axis=0)
            results[name][detector] = {"roc_auc": round(float(roc), 4), "pr_auc": round(float(pr), 4),
                                       "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
            print(f"{name:>22} {x.shape!s:>12} {detector:>20}: ROC-AUC {roc:.3f}  PR-AUC {pr:.3f}",
                  file=sys.stderr, flush=True)  # fmt: skip
    return results


def summarise(results: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Mean ROC-AUC and PR-AUC per detector, and its mean rank by ROC-AUC (1 = best on a data set)."""
    detectors = list(next(iter(results.values())))
    ranks = {d: [] for d in detectors}
    for per_detector in results.values():
        order = sorted(detectors, key=lambda d: -per_detector[d]["roc_auc"])
        for position, d in enumerate(order, start=1):
            ranks[d].append(position)
    return {
        d: {
            "roc_auc": round(float(np.mean([r[d]["roc_auc"] for r in results.values()])), 4),
            "pr_auc": round(float(np.mean([r[d]["pr_auc"] for r in results.values()])), 4),
            "mean_rank": round(float(np.mean(ranks[d])), 2),
        }
        for d in detectors
    }


def markdown(results: dict[str, dict[str, dict[str, float]]], mean: dict[str, dict[str, float]]) -> str:
    detectors = list(mean)
    lines = ["| data set | " + " | ".join(detectors) + " |", "|---" * (len(detectors) + 1) + "|"]
    for name, per_detector in results.items():
        best = max(v["roc_auc"] for v in per_detector.values())
        cells = [
            (f"**{v['roc_auc']:.3f}**" if v["roc_auc"] == best else f"{v['roc_auc']:.3f}") + f" / {v['pr_auc']:.3f}"
            for v in (per_detector[d] for d in detectors)
        ]  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    means = [f"{mean[d]['roc_auc']:.3f} / {mean[d]['pr_auc']:.3f}" for d in detectors]
    lines.append("| **mean** | " + " | ".join(means) + " |")
    lines.append("| **mean rank** | " + " | ".join(f"{mean[d]['mean_rank']:.2f}" for d in detectors) + " |")
    return "\n".join(lines) + "\n\ncells: ROC-AUC / PR-AUC (mean over seeds); bold: best ROC-AUC of the row"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA, help="a folder of .npz files with X and y"
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--seeds", type=int, default=3, help="seeds to average over (default 3)")
    parser.add_argument(
        "--max-rows", type=int, default=10_000, help="subsample larger data sets (default 10000)"
    )
    parser.add_argument(
        "--detectors",
        help=f"comma-separated, of {[*SHOPGUARD, *OTHERS]} (default: {', '.join(UNSUPERVISED)}; "
        f"with --labelled: {', '.join(LABELLED)})",
    )
    parser.add_argument(
        "--labelled",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="the labelled protocol: this share of the training split's anomalies labelled (default 0: none)",
    )
    parser.add_argument("--only", default="", help="comma-separated data set names (file stems) to run")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting for shopguard's model, as the jobs take it (repeatable)",
    )
    args = parser.parse_args(argv)  # fmt: skip

    names = (args.detectors or ",".join(LABELLED if args.labelled else UNSUPERVISED)).split(",")
    unknown = [name for name in names if name not in SHOPGUARD and name not in OTHERS]
    if unknown:
        parser.error(f"unknown detector(s) {unknown}; expected some of {[*SHOPGUARD, *OTHERS]}")
    if not 0 <= args.labelled <= 1:
        parser.error(f"--labelled is a share of the anomalies, 0 to 1; got {args.labelled}")
    learners = [name for name in names if name not in UNSUPERVISED]
    if learners and not args.labelled:
        parser.error(f"{learners} learn from labels: give --labelled SHARE, or leave them out")
    from shopguard.config import ConfigError, load_settings

    try:
        settings = load_settings(overrides=args.set).model
    except ConfigError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    files = sorted(args.data_dir.glob("*.npz"), key=lambda p: (len(p.stem), p.stem))
    if args.only:
        files = [f for f in files if f.stem in args.only.split(",")]
    if not files:
        parser.error(f"no .npz files in {args.data_dir}")
    chosen = {
        name: OTHERS[name] if name in OTHERS else _shopguard(settings, SHOPGUARD[name]) for name in names
    }
    started = time.perf_counter()
    results = evaluate(files, chosen, list(range(args.seeds)), args.max_rows, args.labelled)
    if not results:
        parser.error("no data set could be labelled (see above)")
    mean = summarise(results)
    print(markdown(results, mean))
    protocol = f"labelled {args.labelled:g}, test splits" if args.labelled else "unsupervised, every row"
    print(
        f"\n{len(results)} data sets ({protocol}), {args.seeds} seeds, {time.perf_counter() - started:.0f} s"
    )
    if args.json:
        figures = {"datasets": results, "mean": mean, "settings": args.set, "labelled": args.labelled}
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
