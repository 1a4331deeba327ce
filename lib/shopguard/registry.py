"""Versioned models on a file system (local, HDFS, S3 through pyarrow): `<models>/<version>/`.

    model.keras     the Keras model, preprocessing included
    metadata.json   everything else: features and their fingerprint, thresholds, metrics, input versions,
                    library versions, and the SHA-256 of model.keras
    tensorboard/    training curves

A version is written into a hidden folder and moved into place once whole, so a version folder without
metadata is damage, and scoring refuses it by name rather than quietly using an older version. Nothing here
unpickles: models load with Keras' safe_mode and metadata is JSON.
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
from pydantic import ValidationError

from shopguard.model.metadata import ModelMetadata

MODEL_FILE = "model.keras"
METADATA_FILE = "metadata.json"
INCOMPLETE = ".incomplete-"  # prefix of a version folder still being written
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
    metadata: ModelMetadata


def filesystem(root: str) -> tuple[pafs.FileSystem, str]:
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
    keras_model: Any,
    metadata: ModelMetadata | dict[str, Any],
    models_root: str,
    version: str,
    tensorboard_dir: str | None = None,
) -> str:
    """Write model, TensorBoard logs and metadata (with the model's checksum) into a hidden folder, then move
    it into place: a version folder only ever appears whole. Returns the version path."""
    fs, root = filesystem(models_root)
    target = f"{root.rstrip('/')}/{version}"
    staging = f"{root.rstrip('/')}/{INCOMPLETE}{version}"
    fs.create_dir(staging, recursive=True)
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, MODEL_FILE)
        keras_model.save(local)
        with open(local, "rb") as handle:
            model_bytes = handle.read()
    with fs.open_output_stream(f"{staging}/{MODEL_FILE}") as out:
        out.write(model_bytes)
    if tensorboard_dir and os.path.isdir(tensorboard_dir):
        pafs.copy_files(
            tensorboard_dir,
            f"{staging}/tensorboard",
            source_filesystem=pafs.LocalFileSystem(),
            destination_filesystem=fs,
        )
    given = metadata if isinstance(metadata, ModelMetadata) else ModelMetadata.model_validate(metadata)
    full = given.model_copy(
        update={
            "model_version": version,
            "model_sha256": sha256(model_bytes),
            "libraries": library_versions(),
        }
    )
    with fs.open_output_stream(f"{staging}/{METADATA_FILE}") as out:
        out.write(json.dumps(full.model_dump(mode="json"), indent=2, sort_keys=True).encode())
    fs.move(staging, target)
    return target


def list_versions(models_root: str) -> list[str]:
    """Every version folder, oldest first (hidden folders are saves in progress, or crashed ones)."""
    fs, root = filesystem(models_root)
    if fs.get_file_info(root).type == pafs.FileType.NotFound:
        return []
    return sorted(
        info.base_name
        for info in fs.get_file_info(pafs.FileSelector(root))
        if info.type == pafs.FileType.Directory and not info.base_name.startswith((".", "_"))
    )


def read_metadata(models_root: str, version: str) -> ModelMetadata:
    """The metadata of one version, or ModelNotFoundError naming the folder and what is wrong with it."""
    fs, root = filesystem(models_root)
    path = f"{root.rstrip('/')}/{version}"
    try:
        with fs.open_input_stream(f"{path}/{METADATA_FILE}") as handle:
            metadata = json.loads(handle.read())
    except FileNotFoundError:
        raise ModelNotFoundError(
            f"model folder {path} has no {METADATA_FILE}: it cannot be scored with. Restore the file, or remove "
            "the folder (then the newest complete version is used), or pin another with --model-version"
        ) from None
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(
            f"{path}/{METADATA_FILE} is unreadable ({exc}): restore it, or remove the folder, or pin another "
            "version with --model-version"
        ) from None
    if not isinstance(metadata, dict) or "model_sha256" not in metadata:
        raise ModelNotFoundError(f"{path}/{METADATA_FILE} is not a shopguard model's metadata")
    try:
        return ModelMetadata.model_validate(metadata)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<top>'}: {e['msg']}" for e in exc.errors())
        raise ModelNotFoundError(f"{path}/{METADATA_FILE} cannot be used: {problems}") from None


def load_model(models_root: str, version: str | None = None) -> StoredModel:
    """Bytes and metadata of `version` (default: the newest folder), checksum verified. A folder without
    readable metadata is refused, never skipped for an older version."""
    versions = list_versions(models_root)
    if not versions:
        raise ModelNotFoundError(f"no trained model under {models_root}; run the train job first")
    chosen = version or versions[-1]
    if chosen not in versions:
        raise ModelNotFoundError(
            f"model version {chosen!r} not found under {models_root}; have {versions[-5:]}"
        )
    metadata = read_metadata(models_root, chosen)
    fs, root = filesystem(models_root)
    path = f"{root.rstrip('/')}/{chosen}"
    with fs.open_input_stream(f"{path}/{MODEL_FILE}") as handle:
        model_bytes = handle.read()
    if sha256(model_bytes) != metadata.model_sha256:
        raise ModelIntegrityError(
            f"{path}/{MODEL_FILE} does not match the SHA-256 in its metadata; it was changed or corrupted "
            "after training. Retrain, or restore the original file."
        )
    return StoredModel(version=chosen, path=path, model_bytes=model_bytes, metadata=metadata)


def describe_versions(models_root: str) -> list[dict[str, Any]]:
    """Newest first: mode, training date, thresholds and metrics of each version, or what makes it unusable."""
    described: list[dict[str, Any]] = []
    for version in reversed(list_versions(models_root)):
        try:
            meta = read_metadata(models_root, version)
        except ModelNotFoundError as exc:
            described.append({"version": version, "problem": str(exc)})
            continue
        thresholds = {k: v for k, v in meta.thresholds.items() if k in ("alert", "block", "method")}
        metrics = {k: v for k, v in meta.metrics.items() if k.startswith("val_") and "loss" not in k}
        described.append({
            "version": version, "mode": meta.mode, "created_at": meta.created_at,
            "snapshot_date": meta.training.get("snapshot_date"), "thresholds": thresholds, "metrics": metrics,
        })  # fmt: skip
    return described


def keras_model_from_bytes(model_bytes: bytes):
    """Load a .keras file held in memory (as shipped to Spark workers), with safe_mode on."""
    import shopguard.model.training  # noqa: F401  sets the Keras backend, registers every mode's layers
    from shopguard.model.backend import keras

    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, MODEL_FILE)
        with open(local, "wb") as handle:
            handle.write(model_bytes)
        return keras.saving.load_model(local, safe_mode=True, compile=False)
