"""Versioned models on a file system (local, HDFS, S3 through pyarrow): `<models>/<version>/`.

    model.keras     the Keras model, preprocessing included
    metadata.json   everything else: features and their fingerprint, thresholds, metrics, input versions,
                    library versions, and the SHA-256 of model.keras
    tensorboard/    training curves

A version counts once its metadata.json exists; it is written last, so a crash mid-save leaves no usable
half-model. Nothing here unpickles: models load with Keras' safe_mode and metadata is JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from typing import Any

import pyarrow.fs as pafs

MODEL_FILE = "model.keras"
METADATA_FILE = "metadata.json"
LIBRARIES = (
    "shopguard",
    "keras",
    "tensorflow",
    "jax",
    "torch",
    "numpy",
    "pandas",
    "pyarrow",
    "pyspark",
    "deltalake",
    "scikit-learn",
)


class ModelNotFoundError(FileNotFoundError):
    """No (complete) model version where one was expected."""


class ModelIntegrityError(RuntimeError):
    """A model file does not match the checksum its metadata recorded."""


@dataclass(frozen=True)
class StoredModel:
    version: str
    path: str
    model_bytes: bytes
    metadata: dict[str, Any]


def _filesystem(root: str) -> tuple[pafs.FileSystem, str]:
    if "://" not in root:
        root = os.path.abspath(root)
        return pafs.LocalFileSystem(), root
    if root.startswith("s3a://"):
        root = "s3://" + root[len("s3a://") :]
    return pafs.FileSystem.from_uri(root)


def library_versions() -> dict[str, str]:
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return found


def new_version(mode: str) -> str:
    """Sorts by creation time; the suffix keeps two runs in one second apart."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{mode}-{uuid.uuid4().hex[:6]}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_model(
    keras_model, metadata: dict[str, Any], models_root: str, version: str, tensorboard_dir: str | None = None
) -> str:
    """Write model, TensorBoard logs, then metadata (with the model's checksum); returns the version path."""
    fs, root = _filesystem(models_root)
    target = f"{root.rstrip('/')}/{version}"
    fs.create_dir(target, recursive=True)
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, MODEL_FILE)
        keras_model.save(local)
        with open(local, "rb") as handle:
            model_bytes = handle.read()
    with fs.open_output_stream(f"{target}/{MODEL_FILE}") as out:
        out.write(model_bytes)
    if tensorboard_dir and os.path.isdir(tensorboard_dir):
        pafs.copy_files(
            tensorboard_dir,
            f"{target}/tensorboard",
            source_filesystem=pafs.LocalFileSystem(),
            destination_filesystem=fs,
        )
    full = {
        **metadata,
        "model_version": version,
        "model_sha256": sha256(model_bytes),
        "libraries": library_versions(),
    }
    with fs.open_output_stream(f"{target}/{METADATA_FILE}") as out:
        out.write(json.dumps(full, indent=2, sort_keys=True).encode())
    return target


def list_versions(models_root: str) -> list[str]:
    """Complete versions, oldest first."""
    fs, root = _filesystem(models_root)
    if fs.get_file_info(root).type == pafs.FileType.NotFound:
        return []
    versions = []
    for info in fs.get_file_info(pafs.FileSelector(root)):
        if info.type == pafs.FileType.Directory and not info.base_name.startswith((".", "_")):
            if fs.get_file_info(f"{info.path}/{METADATA_FILE}").type == pafs.FileType.File:
                versions.append(info.base_name)
    return sorted(versions)


def load_model(models_root: str, version: str | None = None) -> StoredModel:
    """Bytes and metadata of `version` (default: the newest), checksum verified."""
    versions = list_versions(models_root)
    if not versions:
        raise ModelNotFoundError(f"no trained model under {models_root}; run the train job first")
    chosen = version or versions[-1]
    if chosen not in versions:
        raise ModelNotFoundError(
            f"model version {chosen!r} not found under {models_root}; have {versions[-5:]}"
        )
    fs, root = _filesystem(models_root)
    path = f"{root.rstrip('/')}/{chosen}"
    with fs.open_input_stream(f"{path}/{METADATA_FILE}") as handle:
        metadata = json.loads(handle.read())
    with fs.open_input_stream(f"{path}/{MODEL_FILE}") as handle:
        model_bytes = handle.read()
    if sha256(model_bytes) != metadata.get("model_sha256"):
        raise ModelIntegrityError(
            f"{path}/{MODEL_FILE} does not match the SHA-256 in its metadata; it was changed or corrupted "
            "after training. Retrain, or restore the original file."
        )
    return StoredModel(version=chosen, path=path, model_bytes=model_bytes, metadata=metadata)


def keras_model_from_bytes(model_bytes: bytes):
    """Load a .keras file held in memory (as shipped to Spark workers), with safe_mode on."""
    import keras

    import shopguard.model  # noqa: F401  registers the custom layers

    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, MODEL_FILE)
        with open(local, "wb") as handle:
            handle.write(model_bytes)
        return keras.saving.load_model(local, safe_mode=True, compile=False)
