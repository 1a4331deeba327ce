"""One self-contained HTML page on detection quality: plots (matplotlib, embedded as PNG) and tables that a
risk analyst opens in a browser, with no files beside it."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from shopguard.evaluation import BUDGETS, common_reasons, metric_table, weights  # noqa: E402

PLOTS = ("roc", "precision_recall", "score_distributions", "recall_by_type", "alert_reasons", "baselines")


@dataclass
class ScorerResult:
    """The scores of one scorer joined with the truth (see evaluation.join_truth); an optional `weight`
    column says how many users each row stands for."""

    name: str
    kind: str  # "model" or "baseline"
    frame: pd.DataFrame
    thresholds: dict[str, Any] = field(default_factory=dict)


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def _figure(name: str, figure, caption: str) -> str:
    return (
        f'<figure><img data-plot="{name}" alt="{html.escape(caption)}" src="data:image/png;base64,{_png(figure)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _labels(frame: pd.DataFrame) -> np.ndarray:
    return frame["anomaly_type"].notna().astype(int).to_numpy()


def _curves(results: list[ScorerResult]) -> str:
    roc, ax_roc = plt.subplots(figsize=(5.5, 4.5))
    pr, ax_pr = plt.subplots(figsize=(5.5, 4.5))
    for result in results:
        y, s, w = _labels(result.frame), result.frame["score"].to_numpy(), weights(result.frame)
        if y.min() == y.max():
            continue
        fpr, tpr, _ = roc_curve(y, s, sample_weight=w)
        precision, recall, _ = precision_recall_curve(y, s, sample_weight=w)
        ax_roc.plot(fpr, tpr, label=result.name)
        ax_pr.plot(recall, precision, label=result.name)
    ax_roc.plot([0, 1], [0, 1], "k:", linewidth=0.8)
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, all anomaly types")
    ax_pr.set(xlabel="recall", ylabel="precision", title="Precision-recall, all anomaly types")
    for axis in (ax_roc, ax_pr):
        axis.legend(fontsize=7, loc="best")
    return _figure("roc", roc, "ROC curves of every scorer") + _figure(
        "precision_recall", pr, "Precision-recall curves of every scorer"
    )


def _distributions(results: list[ScorerResult]) -> str:
    models = [r for r in results if r.kind == "model"] or results[:1]
    figure, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.8), squeeze=False)
    for axis, result in zip(axes[0], models, strict=True):
        frame = result.frame
        scores, w = np.log10(frame["score"].clip(lower=1e-6)), weights(frame)
        bins = np.linspace(scores.min(), scores.max(), 60)
        for name, group in (
            ("normal", frame["anomaly_type"].isna()),
            ("anomalous", frame["anomaly_type"].notna()),
        ):
            axis.hist(
                scores[group], bins=bins, weights=w[group.to_numpy()], alpha=0.6, label=name, density=True
            )
        for name, style in (("alert", "--"), ("block", ":")):
            if name in result.thresholds:
                axis.axvline(
                    np.log10(max(result.thresholds[name], 1e-6)), color="k", linestyle=style, label=name
                )
        axis.set(title=result.name, xlabel="log10 score", ylabel="density")
        axis.legend(fontsize=7)
    return _figure("score_distributions", figure, "Score distributions, normal vs labelled anomalous users")


def _recall_by_type(metrics: pd.DataFrame, results: list[ScorerResult]) -> str:
    types = [t for t in metrics["anomaly_type"].unique() if t not in ("all",)]
    figure, axes = plt.subplots(len(results), 1, figsize=(9, 2.6 * len(results)), squeeze=False)
    for axis, result in zip(axes[:, 0], results, strict=True):
        width = 0.8 / len(BUDGETS)
        for i, budget in enumerate(BUDGETS):
            values = [
                metrics.loc[(metrics.scorer == result.name) & (metrics.anomaly_type == t)
                            & (metrics.metric == f"recall@budget_{budget:g}"), "value"].sum()
                for t in types
            ]  # fmt: skip
            axis.bar(np.arange(len(types)) + i * width, values, width, label=f"top {budget:.1%}")
        axis.set_xticks(np.arange(len(types)) + width * (len(BUDGETS) - 1) / 2, types, fontsize=8)
        axis.set(ylim=(0, 1.05), ylabel="recall", title=result.name)
        axis.legend(fontsize=7, ncol=len(BUDGETS))
    figure.tight_layout()
    return _figure("recall_by_type", figure, "Recall per anomaly type at alert budgets of 0.1%, 1% and 5%")


def _alert_reasons(results: list[ScorerResult]) -> str:
    models = [r for r in results if r.kind == "model" and "reasons" in r.frame]
    figure, axes = plt.subplots(1, max(1, len(models)), figsize=(6 * max(1, len(models)), 4.5), squeeze=False)
    for axis, result in zip(axes[0], models, strict=False):
        flagged = (
            result.frame["is_anomaly"]
            if "is_anomaly" in result.frame
            else pd.Series(False, result.frame.index)
        )
        alerts = result.frame[flagged.astype(bool)]
        counted = common_reasons(alerts["reasons"], row_weights=weights(alerts))
        if counted:
            names, counts = zip(*reversed(counted), strict=True)
            axis.barh(names, counts)
        axis.set(
            title=f"{result.name}: {weights(alerts).sum():.0f} alerts", xlabel="alerts naming the reason"
        )
        axis.tick_params(axis="y", labelsize=7)
    figure.tight_layout()
    return _figure("alert_reasons", figure, "The most common reasons among alerts")


# One line per figure, so a reader who is not a statistician knows what each number says.
METRIC_MEANINGS: dict[str, str] = {
    "roc_auc": "ROC-AUC: the chance that a random anomalous user scores above a random normal one (0.5 = "
    "chance, 1 = perfect); blind to how rare anomalies are.",
    "pr_auc": "PR-AUC (average precision): precision averaged over every recall level; its chance level is the "
    "share of anomalous users, so it shows how usable the ranking is when anomalies are rare.",
    "recall@budget_0.01": "recall at a 1% budget: the share of anomalous users among the 1% scored highest.",
    "precision@budget_0.01": "precision at a 1% budget: the share of the top 1% who are anomalous.",
    "precision@threshold_alert": "precision at the alert threshold: of the users the model alerts, the share "
    "who are anomalous.",
    "recall@threshold_alert": "recall at the alert threshold: the share of anomalous users the model alerts.",
    "f1@threshold_alert": "F1 at the alert threshold: the harmonic mean of that precision and recall.",
    "top_reason_in_signature": "top reason in signature: how often an anomaly's first reason names a feature "
    "typical of its type (generated data only).",
}


def _baselines(metrics: pd.DataFrame) -> str:
    table = metric_table(metrics, ["roc_auc", "pr_auc"], "all")
    figure, axis = plt.subplots(figsize=(8, 3.5))
    positions = np.arange(len(table))
    axis.bar(positions - 0.2, table["roc_auc"], 0.4, label="ROC-AUC")
    axis.bar(positions + 0.2, table["pr_auc"], 0.4, label="PR-AUC")
    axis.set_xticks(positions, table.index, fontsize=7, rotation=15)
    axis.set(ylim=(0, 1.05), title="Models and baselines, all anomaly types")
    axis.legend(fontsize=8)
    ran = [name.split(":", 1)[1] for name in table.index if str(name).startswith("baseline:")]
    caption = "Keras models beside the baselines that ran: " + (", ".join(ran) if ran else "none")
    return _figure("baselines", figure, caption)


def _html_table(frame: pd.DataFrame, caption: str) -> str:
    frame = frame.copy()
    frame.columns.name = None
    return f"<h3>{html.escape(caption)}</h3>" + frame.to_html(
        float_format=lambda v: f"{v:.3f}", border=0, na_rep=""
    )


def render(snapshot_date: date, results: list[ScorerResult], metrics: pd.DataFrame, truth_source: str,
           notes: list[str] | None = None, warnings: list[str] | None = None) -> str:  # fmt: skip
    """The whole report as one HTML string; `warnings` are shown first, where nobody can miss them."""
    summary = metric_table(metrics, ["roc_auc", "pr_auc", "recall@budget_0.01", "precision@budget_0.01"])
    thresholds = [r for r in results if r.thresholds]
    wanted = [m for m in ("precision@threshold_alert", "recall@threshold_alert", "f1@threshold_alert")
              if m in set(metrics.metric)]  # fmt: skip
    per_type = metrics[metrics.metric == "recall@budget_0.01"].pivot_table(
        index="scorer", columns="anomaly_type", values="value", sort=False
    )
    sections = [
        _html_table(summary, "All anomaly types"),
        _html_table(per_type, "Recall at a 1% alert budget, per anomaly type"),
    ]
    if wanted:
        sections.append(_html_table(metric_table(metrics, wanted), "At the models' own alert thresholds"))
    if thresholds:
        rows = pd.DataFrame({r.name: {k: v for k, v in r.thresholds.items() if not isinstance(v, dict)}
                             for r in thresholds}).T  # fmt: skip
        sections.append(_html_table(rows, "Thresholds and the alert volume they imply"))
    signature = metrics[metrics.metric == "top_reason_in_signature"]
    if len(signature):
        table = signature.pivot_table(index="scorer", columns="anomaly_type", values="value", sort=False)
        sections.append(
            _html_table(table, "Share of anomalies whose top reason is a signature feature of their type")
        )
    plots = _curves(results) + _distributions(results) + _recall_by_type(metrics, results)
    plots += _alert_reasons(results) + _baselines(metrics)
    notes_html = "".join(f"<li>{html.escape(n)}</li>" for n in notes or [])
    warnings_html = "".join(f'<p class="warning" data-warning>{html.escape(w)}</p>' for w in warnings or [])
    shown = set(metrics.metric)
    meanings = "".join(
        f"<li>{html.escape(text)}</li>" for name, text in METRIC_MEANINGS.items() if name in shown
    )
    first = results[0].frame if results else pd.DataFrame({"anomaly_type": []})
    positives, users = weights(first)[first["anomaly_type"].notna().to_numpy()].sum(), weights(first).sum()
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>shopguard evaluation {snapshot_date}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin-bottom: 1em; }}
td, th {{ padding: 0.2em 0.6em; text-align: right; border-bottom: 1px solid #ddd; }}
figure {{ display: inline-block; margin: 0.5em; vertical-align: top; }}
figcaption {{ font-size: 0.8em; color: #555; }}
img {{ max-width: 100%; }}
.warning {{ background: #fff3cd; border-left: 4px solid #c77c00; padding: 0.5em 0.8em; }}
</style></head><body>
<h1>shopguard detection quality, {snapshot_date}</h1>
{warnings_html}
<p>{users:.0f} users evaluated, {positives:.0f} of them anomalous according to
the {html.escape(truth_source)}. Metrics: scikit-learn; every anomaly group is scored against normal users.</p>
<ul>{notes_html}</ul>
<h2>Summary</h2>{"".join(sections)}
<h2>What the figures mean</h2><ul data-meanings>{meanings}</ul>
<h2>Plots</h2>{plots}
</body></html>
"""


# --------------------------------------------------------------------------- the nightly report


def render_night(night: Any, drift: dict[str, float], history: pd.DataFrame, monitoring: Any) -> str:
    """One night on a page: its warnings and failures, the most-shifted features against the champion's
    training data, the alert and block rates of the last nights, and every measure."""
    top = list(drift.items())[: monitoring.report_features]
    figure, axis = plt.subplots(figsize=(8, 0.3 * max(len(top), 4) + 1))
    if top:
        axis.barh([name for name, _ in reversed(top)], [value for _, value in reversed(top)], color="#4c72b0")
        for threshold, style in ((monitoring.feature_psi.warn, "--"), (monitoring.feature_psi.fail, "-")):
            if threshold is not None:
                axis.axvline(threshold, color="#c44e52", linestyle=style)
    axis.set_xlabel("population stability index against the champion's training snapshot")
    drift_plot = _figure("feature_drift", figure, f"The {len(top)} most-shifted features")
    figure, axis = plt.subplots(figsize=(8, 3.5))
    for metric, label in (("alert_rate", "alerted or blocked"), ("block_rate", "blocked")):
        shown = history[history.metric == metric]
        axis.plot(pd.to_datetime(shown.run_date), shown.value, marker="o", label=label)
    axis.set_ylabel("share of users")
    axis.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=10, interval_multiples=True))
    axis.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    axis.legend()
    figure.autofmt_xdate()
    rate_plot = _figure(
        "alert_rate", figure, f"Alert and block rates, last {monitoring.report_nights} nights"
    )
    said = "".join(f'<p class="warning" data-warning>{html.escape(w)}</p>' for w in night.warnings)
    said += "".join(f'<p class="failure" data-failure>{html.escape(f)}</p>' for f in night.failures)
    measures = pd.DataFrame([m.__dict__ for m in night.measures])
    promoted = (f"<p>Promoted: {html.escape(night.promoted.model_version)} ({html.escape(night.promoted.reason)})</p>"
                if night.promoted else "")  # fmt: skip
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>shopguard night {night.day}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.85em; }} td, th {{ padding: 0.2em 0.6em; border-bottom: 1px solid #ddd; }}
figure {{ display: inline-block; margin: 0.5em; }} figcaption {{ font-size: 0.8em; color: #555; }}
.warning {{ background: #fff3cd; border-left: 4px solid #c77c00; padding: 0.5em 0.8em; }}
.failure {{ background: #f8d7da; border-left: 4px solid #a00; padding: 0.5em 0.8em; }}
</style></head><body>
<h1>shopguard night {night.day}</h1>
<p>Champion {html.escape(night.champion)}; challenger in shadow: {html.escape(night.challenger or "none")}.</p>
{promoted}{said or "<p>No warnings.</p>"}
<h2>Drift and alert volume</h2>{drift_plot}{rate_plot}
<h2>Every measure</h2>{measures.to_html(index=False, float_format=lambda v: f"{v:.4g}")}
</body></html>
"""
