"""The evaluation report is one self-contained HTML page; it must open in a real browser with every plot."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from shopguard.evaluation import join_truth, quality_metrics, reason_signature_rate
from shopguard.report import PLOTS, ScorerResult, render

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
CHECK = """<script>
window.addEventListener('load', () => {
  const plots = [...document.querySelectorAll('img[data-plot]')]
    .filter(i => i.complete && i.naturalWidth > 0).map(i => i.dataset.plot);
  document.body.setAttribute('data-rendered', plots.join(','));
});
</script></body>"""


@pytest.fixture(scope="module")
def report() -> str:
    rng = np.random.default_rng(0)
    users = [f"u{i}" for i in range(400)]
    truth = pd.DataFrame(
        {"user_id": users[:20], "anomaly_type": ["brushing", "bulk_order"] * 10, "subtle": [False] * 20}
    )
    model = pd.DataFrame({
        "user_id": users, "score": np.r_[rng.uniform(2, 5, 20), rng.uniform(0, 3, 380)],
        "reasons": [["fast_gap_share_1d high", "events_1d high"]] * 20 + [["amount_max_7d high"]] * 380,
    })  # fmt: skip
    model["is_anomaly"] = model.score > 2.9
    model["action"] = np.where(model.score > 4, "block", np.where(model.is_anomaly, "alert", "pass"))
    results = [
        ScorerResult("20261122T000000Z-autoencoder-abc", "model", join_truth(model, truth), {"alert": 2.9, "block": 4.0}),
        ScorerResult("baseline:isolation_forest", "baseline",
                     join_truth(pd.DataFrame({"user_id": users, "score": rng.uniform(0, 1, 400)}), truth)),
    ]  # fmt: skip
    metrics = pd.concat(
        [quality_metrics(r.frame, r.name) for r in results]
        + [reason_signature_rate(results[0].frame, results[0].name)]
    )
    return render(dt.date(2026, 11, 22), results, metrics, "truth", ["200 users evaluated"])


def test_the_report_holds_every_plot_embedded_and_the_tables(report):
    assert set(re.findall(r'data-plot="(\w+)"', report)) == set(PLOTS)
    assert 'src="data:image/png;base64,' in report and "http" not in report.split("<body>")[1]
    assert "Recall at a 1% alert budget, per anomaly type" in report
    assert "top reason is a signature feature" in report


def test_the_report_renders_in_headless_chromium_with_every_plot(report, tmp_path):
    browser = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        pytest.fail("no Chromium to render the report: ./submit.sh setup installs Debian's chromium package")
    page = tmp_path / "report.html"
    page.write_text(report.replace("</body>", CHECK))
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000"]  # fmt: skip
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    rendered = re.search(r'data-rendered="([^"]*)"', dom.stdout)
    assert rendered, f"the page did not finish loading: {dom.stderr[-2000:]}"
    assert set(rendered.group(1).split(",")) == set(PLOTS)
    shot = tmp_path / "report.png"
    subprocess.run([*flags, "--window-size=1200,4000", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)  # fmt: skip
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
