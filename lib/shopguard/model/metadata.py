"""The metadata stored beside every model version (metadata.json), declared once as a typed class.

`schema_version` says which layout a file has. Models saved before it existed are version 1; a file from a
newer shopguard than this one is refused with a message that says so, never half-read.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION = 1


class ModelMetadata(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    schema_version: int = SCHEMA_VERSION
    mode: str  # the mode that ran: autoencoder, semi_supervised or classifier (never auto)
    feature_names: list[str] = Field(default_factory=list)  # the model's input columns, in order
    feature_fingerprint: str | None = None  # names and types of the features table it fits
    thresholds: dict[str, Any] = Field(default_factory=dict)  # alert, block, method, expected shares
    reference_quantiles: dict[str, list[float]] = Field(default_factory=dict)  # score -> percentile
    reference_values: list[float] = Field(default_factory=list)  # training medians: reasons' high / low
    constant_features: list[str] = Field(default_factory=list)  # no variance in training: never a reason
    normalisation: dict[str, Any] = Field(default_factory=dict)  # what turns features into model units
    metrics: dict[str, float] = Field(default_factory=dict)  # final losses, validation ROC/PR-AUC
    training: dict[str, Any] = Field(default_factory=dict)  # rows, device, seconds, mode_reason, params...
    inputs: dict[str, Any] = Field(default_factory=dict)  # tables and versions trained on
    # per feature: training deciles and the share of users between them (drift is measured against it)
    feature_profile: dict[str, dict[str, list[float]]] = Field(default_factory=dict)
    created_at: str | None = None
    # set when the version is saved (shopguard.registry)
    model_version: str | None = None
    model_sha256: str | None = None
    libraries: dict[str, str] = Field(default_factory=dict)

    @field_validator("schema_version")
    @classmethod
    def _readable(cls, version: int) -> int:
        if version > SCHEMA_VERSION:
            raise ValueError(
                f"model metadata schema version {version} is newer than this shopguard reads "
                f"({SCHEMA_VERSION}): upgrade shopguard, or use a model trained by this version"
            )
        return version

    @property
    def holdout_share(self) -> float:
        return float(self.training.get("holdout_share", 0.0))

    @property
    def training_snapshots(self) -> list[str]:
        return list(self.inputs.get("features", {}).get("snapshots", []))
