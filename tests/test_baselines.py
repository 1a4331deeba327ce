from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from shopguard.baselines import MAX_BINS, _binned_at_weighted_quantiles, gradient_boosting, isolation_forest


def data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.lognormal(1.0, 0.3, size=(1000, 5))
    x[-50:, 2] *= 40  # anomalies: one feature far off
    labels = np.full(len(x), np.nan)
    labels[:300] = 0
    labels[-50:-10] = 1
    return x, labels


def test_isolation_forest_ranks_the_outliers_near_the_top():
    x, _ = data()
    scores = isolation_forest(x, x)  # unsupervised: fitted on everyone, anomalies included
    assert set(np.argsort(-scores)[:100]) >= set(range(950, 1000))  # all 50 within the top 10%


def test_gradient_boosting_learns_from_labels_and_declines_without_enough():
    x, labels = data()
    scores = gradient_boosting(x, labels, x, unlabelled_sample=300)
    assert scores[-10:].min() > np.quantile(scores[:950], 0.99)  # the unlabelled anomalies too
    few = labels.copy()
    few[-50:-14] = np.nan
    assert gradient_boosting(x, few, x, unlabelled_sample=300) is None


def test_the_boosted_baseline_bins_as_scikit_learn_does_from_the_same_weighted_rows():
    """Pre-binned in one call (scikit-learn 1.9's own weighted binning costs ~0.13 s a column): the same
    thresholds as its per-column function, NaN kept, few-valued columns untouched."""
    from sklearn.ensemble._hist_gradient_boosting.binning import _find_binning_thresholds

    rng = np.random.default_rng(3)
    x = np.column_stack(
        [rng.lognormal(size=800), rng.normal(size=800), rng.integers(0, 9, 800).astype(float)]
    )
    x[::97, 1] = np.nan
    weight = np.where(rng.random(800) < 0.1, 4.0, 0.3)
    fitted, evaluated = _binned_at_weighted_quantiles(x, weight, x[:100] * 1.5)
    for column in (0, 1):
        thresholds = _find_binning_thresholds(x[:, column], MAX_BINS, sample_weight=weight)
        assert len(thresholds) > 100  # more distinct values than bins: binned at quantiles
        for original, binned in (
            (x[:, column], fitted[:, column]),
            (x[:100, column] * 1.5, evaluated[:, column]),
        ):
            present = ~np.isnan(original)
            assert np.isnan(binned[~present]).all()
            assert (binned[present] == np.searchsorted(thresholds, original[present])).all()
    assert (fitted[:, 2] == x[:, 2]).all()


def test_the_baselines_fit_without_importing_keras_or_tensorflow():
    """The evaluate job fits them after its Spark work; importing Keras there cost ~3.6 s per run."""
    script = (
        "import sys, numpy as np\n"
        "from test_baselines import data\n"
        "from shopguard.baselines import MAX_BINS, _binned_at_weighted_quantiles, gradient_boosting, isolation_forest\n"
        "x, labels = data()\n"
        "assert gradient_boosting(x, labels, x, unlabelled_sample=300) is not None\n"
        "isolation_forest(x, x)\n"
        "print(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).parent)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
