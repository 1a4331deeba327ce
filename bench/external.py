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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "benchmarks" / "adbench"
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

Detector = Callable[[np.ndarray, int], np.ndarray]  # (X, seed) -> score per row, higher = more anomalous


def shopguard_with(overrides: Sequence[str] = ()) -> Detector:
    """The product's unsupervised model with conf/base's `model:` settings (`overrides`, as `--set` gives
    them, merged over them), trained and applied exactly as the jobs do. ConfigError, naming the setting,
    when the overrides are not valid: raised here, before any data set is read."""
    from shopguard.config import load_settings

    settings = load_settings(overrides=list(overrides)).model

    def shopguard(x: np.ndarray, seed: int) -> np.ndarray:
        from shopguard.model import TrainingParams, batch_scores, train

        params = TrainingParams.from_settings(settings, seed=seed, mode="autoencoder")
        names = [f"f{j}" for j in range(x.shape[1])]
        users = np.array([f"row-{i}" for i in range(len(x))], dtype=object)
        trained = train(x.astype(np.float32), users, names, params)
        return batch_scores(trained.model, trained.mode, x.astype(np.float32))[0]

    return shopguard


def _pyod(name: str, **kwargs) -> Detector:
    def detect(x: np.ndarray, seed: int) -> np.ndarray:
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
        model.fit(_standardised(x) if name in ("KNN", "PCA") else x)
        return np.asarray(model.decision_scores_, dtype=np.float64)

    return detect


def _standardised(x: np.ndarray) -> np.ndarray:
    """Distance and projection detectors need comparable units; PyOD leaves that to the caller."""
    spread = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(spread > 0, spread, 1.0)


DETECTORS: dict[str, Detector | None] = {
    "shopguard": None,  # shopguard_with(the --set overrides), built in main
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


def evaluate(
    files: list[Path], detectors: dict[str, Detector], seeds: list[int], max_rows: int
) -> dict[str, dict[str, dict[str, float]]]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    results: dict[str, dict[str, dict[str, float]]] = {}
    for path in files:
        x, y = load(path, max_rows)
        name = path.stem
        results[name] = {}
        for detector, detect in detectors.items():
            started = time.perf_counter()
            runs = []
            for seed in seeds:
                scores = detect(x, seed)
                scores = np.nan_to_num(scores, nan=np.nanmin(scores) if np.isfinite(scores).any() else 0.0)
                runs.append((roc_auc_score(y, scores), average_precision_score(y, scores)))
            roc, pr = np.mean(runs, axis=0)
            results[name][detector] = {"roc_auc": round(float(roc), 4), "pr_auc": round(float(pr), 4),
                                       "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
            print(f"{name:>22} {x.shape!s:>12} {detector:>17}: ROC-AUC {roc:.3f}  PR-AUC {pr:.3f}",
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
    parser.add_argument("--detectors", default=",".join(DETECTORS), help="comma-separated subset")
    parser.add_argument("--only", default="", help="comma-separated data set names (file stems) to run")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting for shopguard's model, as the jobs take it (repeatable)",
    )
    args = parser.parse_args(argv)  # fmt: skip

    unknown = [name for name in args.detectors.split(",") if name not in DETECTORS]
    if unknown:
        parser.error(f"unknown detector(s) {unknown}; expected some of {list(DETECTORS)}")
    from shopguard.config import ConfigError

    try:
        ours = shopguard_with(args.set)
    except ConfigError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    files = sorted(args.data_dir.glob("*.npz"), key=lambda p: (len(p.stem), p.stem))
    if args.only:
        files = [f for f in files if f.stem in args.only.split(",")]
    if not files:
        parser.error(f"no .npz files in {args.data_dir}")
    chosen = {name: DETECTORS[name] or ours for name in args.detectors.split(",")}
    started = time.perf_counter()
    results = evaluate(files, chosen, list(range(args.seeds)), args.max_rows)
    mean = summarise(results)
    print(markdown(results, mean))
    print(f"\n{len(files)} data sets, {args.seeds} seeds, {time.perf_counter() - started:.0f} s")
    if args.json:
        figures = {"datasets": results, "mean": mean, "settings": args.set}
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
