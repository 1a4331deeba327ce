"""Keras (its backend chosen by the package before the first import: tensorflow unless KERAS_BACKEND says
otherwise), and the device training runs on."""

from __future__ import annotations

import logging

import keras

log = logging.getLogger("shopguard.model")

__all__ = ["keras", "training_device"]


def training_device() -> str:
    """The accelerator Keras will train on, for the log and the model metadata."""
    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            return f"GPU ({len(gpus)}x, tensorflow)" if gpus else "CPU (tensorflow)"
        if backend == "jax":
            import jax

            gpus = [d for d in jax.devices() if d.platform == "gpu"]
            return f"GPU ({gpus[0].device_kind}, jax)" if gpus else "CPU (jax)"
        if backend == "torch":
            import torch

            if torch.cuda.is_available():
                return f"GPU ({torch.cuda.get_device_name(0)}, torch)"
            return "CPU (torch)"
    except Exception as exc:  # a broken CUDA install must not stop a CPU run
        log.warning("could not query accelerators (%s); assuming CPU", exc)
    return f"CPU ({backend})"
