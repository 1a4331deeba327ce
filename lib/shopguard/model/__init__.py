"""The Keras models: one module per mode behind one interface (`base.ModeModule`: fit, score a batch with its
explanation), training on the driver (`training`), thresholds, reasons, and the model metadata (`metadata`).

* autoencoder (unsupervised): the default fuses a rank-normalised autoencoder with ECOD's tail score
  (`ensemble`); `log_autoencoder` is the earlier reconstruction error alone;
* semi_supervised: the autoencoder plus a logistic head on its residuals, fitted on the few labels;
* classifier: P(anomalous) from a small network; reasons by occlusion.

Everything a scorer needs is inside the saved model (registered layers, loadable with `safe_mode=True`).
"""

import importlib
import os
from typing import Any

# Before Keras is first imported, by any module of this package.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Public names, imported on first use: `shopguard.model.metadata` (read by `./submit.sh models`, no Spark)
# must not pay for TensorFlow.
_WHERE = {
    "FeatureArrays": "data",
    "feature_arrays": "data",
    "holdout_mask": "data",
    "user_share_mask": "data",
    "validation_mask": "data",
    "Explanation": "explain",
    "reasons": "explain",
    "labelled_and_presumed_normal": "data",
    "predict": "fitting",
    "PERCENTILE_GRID": "thresholds",
    "choose_thresholds": "thresholds",
    "percentile_of": "thresholds",
    "MODES": "training",
    "TrainedModel": "training",
    "TrainingParams": "training",
    "batch_scores": "training",
    "resolve_mode": "training",
    "train": "training",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'shopguard.model' has no attribute {name!r}")
    return getattr(importlib.import_module(f"shopguard.model.{_WHERE[name]}"), name)


__all__ = [
    "MODES",
    "PERCENTILE_GRID",
    "Explanation",
    "FeatureArrays",
    "TrainedModel",
    "TrainingParams",
    "batch_scores",
    "choose_thresholds",
    "feature_arrays",
    "holdout_mask",
    "labelled_and_presumed_normal",
    "percentile_of",
    "predict",
    "reasons",
    "resolve_mode",
    "train",
    "user_share_mask",
    "validation_mask",
]
