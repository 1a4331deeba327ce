"""Configuration as data: YAML files under conf/, merged, then validated once into typed settings.

Merge order (later wins): conf/base/*.yml -> conf/profiles/<profile>.yml -> conf/local/*.yml (git-ignored)
-> each --conf-file -> each --set section.key=value. Unknown keys and wrong types fail at start-up with a
message that names the key and what was expected.
"""

from __future__ import annotations

import copy
import os
import re
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shopguard import schemas


def checkout_of(module_file: Path) -> Path:
    """The repository a module of this package runs from: lib/shopguard's grandparent (an editable install),
    or, where a cluster job's driver imports the zip submit.sh ships with --py-files (build/shopguard.zip,
    first on its path), the checkout that zip was built in."""
    for parent in module_file.parents:
        if parent.suffix == ".zip":
            return parent.parent.parent
    return module_file.parents[2]


CHECKOUT = checkout_of(Path(__file__).resolve())
DEFAULT_CONF_DIR = CHECKOUT / "conf"


def checkout_path(setting: str | None) -> Path | None:
    """A setting that names a path relative to the checkout (or absolute); None where it is null: off."""
    if setting is None:
        return None
    path = Path(setting)
    return path if path.is_absolute() else CHECKOUT / path


class ConfigError(ValueError):
    """A configuration file or override is missing, malformed or holds a value of the wrong kind."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SparkSettings(_Section):
    master: str = "local[*,4]"
    app_name: str = "shopguard"
    # Passed to spark-submit (so driver memory applies) and to the session builder.
    conf: dict[str, str] = Field(default_factory=dict)
    # The driver JVM's class-data archive, built by ./submit.sh setup (relative to the repository;
    # shopguard.driverjvm); null: every job's JVM loads Spark's classes from the jars.
    class_archive: str | None = "build/driver-classes.jsa"

    @field_validator("conf", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}
        return value


# A table's location may instead be its name in the session's catalog: `catalog:<database>.<table>`.
CATALOG_PREFIX = "catalog:"
_PART = r"(?:[A-Za-z_][A-Za-z0-9_]*|`[^`]+`)"
_CATALOG_NAME = re.compile(rf"{_PART}(?:\.{_PART}){{0,2}}")
_FOLDERS = ("root", "models", "runs")  # not Delta tables: always paths


class TableSettings(_Section):
    """Where each table lives. Relative paths are under `root`; `root` itself is relative to the cwd. A Delta
    table already registered in the session's catalog (the Hive metastore with catalog.enabled, or the
    platform's) may be given by name, `catalog:bronze.clicks`: `shopguard.catalog.Tables` looks up its
    location once per job."""

    root: str = "./data"
    clicks: str = "raw/clicks"
    transactions: str = "raw/transactions"
    labels: str = "raw/labels"
    truth: str = "raw/truth"  # generated data only: every injected anomaly
    features: str = "features"
    scores: str = "scores"
    quarantine: str = "quarantine"
    evaluations: str = "evaluations"
    shadow_scores: str = "shadow_scores"  # a challenger model's scores beside the champion's (nightly)
    run_metrics: str = "run_metrics"  # what each night measured: inputs, quarantine, drift, alert rates
    models: str = "models"
    runs: str = "runs"  # one JSON record per job run (not a Delta table): ./submit.sh runs

    @model_validator(mode="after")
    def _catalog_names(self) -> TableSettings:
        for name, location in self.model_dump().items():
            if not location.startswith(CATALOG_PREFIX):
                continue
            if name in _FOLDERS:
                raise ValueError(f"tables.{name} is a folder, not a table: give a path, not {location!r}")
            if not _CATALOG_NAME.fullmatch(location.removeprefix(CATALOG_PREFIX)):
                raise ValueError(
                    f"tables.{name}: {location!r} is not a table name; expected catalog:<database>.<table> "
                    "(or <catalog>.<database>.<table>)"
                )
        return self

    def catalog_name(self, name: str) -> str | None:
        """The catalog name table `name` is given by, or None where it is given by a path."""
        location: str = getattr(self, name)
        return location.removeprefix(CATALOG_PREFIX) if location.startswith(CATALOG_PREFIX) else None

    def path(self, name: str) -> str:
        """Absolute location of table `name` (a URI stays a URI). A table given by its catalog name has its
        location in the catalog: `shopguard.catalog.Tables.path` looks it up."""
        location = getattr(self, name)
        if location.startswith(CATALOG_PREFIX):
            raise ValueError(f"tables.{name} is {location!r}: its location is looked up by Tables.path")
        if _is_uri(location) or os.path.isabs(location):
            return location
        root = self.root if _is_uri(self.root) else os.path.abspath(self.root)
        return f"{root.rstrip('/')}/{location}"


def _is_uri(location: str) -> bool:
    return "://" in location


class StorageSettings(_Section):
    # auto: delta-spark when the Delta jars are on Spark's classpath, else Spark + delta-rs.
    backend: Literal["auto", "delta-spark", "delta-rs"] = "auto"
    # delta-rs options for object stores (e.g. AWS_REGION); credentials go in conf/local or the environment.
    storage_options: dict[str, str] = Field(default_factory=dict)
    # Delta Lake's jars for the installed Spark, fetched by ./submit.sh setup into `delta_jars` (relative to
    # the repository) and put on Spark's classpath by every job; null where the platform provides Delta.
    delta_version: str = "4.4.0"
    delta_jars: str | None = "build/delta-jars"


def _identity_mapping(table: str) -> dict[str, str]:
    return {field.name: field.name for field in schemas.CANONICAL[table].fields}


class ColumnSettings(_Section):
    """canonical name -> the source table's column name, for platforms whose logs use other names."""

    clicks: dict[str, str] = Field(default_factory=lambda: _identity_mapping("clicks"))
    transactions: dict[str, str] = Field(default_factory=lambda: _identity_mapping("transactions"))
    labels: dict[str, str] = Field(default_factory=lambda: _identity_mapping("labels"))

    @model_validator(mode="after")
    def _only_canonical_names(self) -> ColumnSettings:
        for table in ("clicks", "transactions", "labels"):
            mapping = getattr(self, table)
            known = set(schemas.CANONICAL[table].fieldNames())
            unknown = sorted(set(mapping) - known)
            if unknown:
                raise ValueError(
                    f"columns.{table} maps unknown canonical column(s) {unknown}; "
                    f"expected some of {sorted(known)}"
                )
        return self

    def mapping(self, table: str) -> dict[str, str]:
        """Full canonical -> source mapping; columns not mentioned keep their canonical name."""
        return {**_identity_mapping(table), **getattr(self, table)}


class ValidationSettings(_Section):
    max_future_minutes: int = Field(60, ge=0)
    min_event_date: date = date(2000, 1, 1)
    max_string_length: int = Field(256, gt=0)
    rating_min: int = 1
    rating_max: int = 5
    max_amount: float = Field(1_000_000.0, gt=0)
    max_quantity: int = Field(100_000, gt=0)
    # Amounts are converted to the base currency with these rates; other currencies are quarantined.
    currency_rates: dict[str, float] = Field(default_factory=lambda: {"EUR": 1.0})
    # An input table without rows for the snapshot date fails the features job (an upstream outage must not
    # pass as a quiet night) unless empty days are expected here (--allow-empty).
    allow_empty: bool = False


class FeatureSettings(_Section):
    windows_days: list[int] = Field(default_factory=lambda: [1, 7, 30])
    lifetime_days: int = Field(90, gt=0)
    night_start_hour: int = Field(0, ge=0, le=23)
    night_end_hour: int = Field(6, ge=0, le=24)
    fast_gap_seconds: int = Field(5, gt=0)
    short_dwell_ms: int = Field(2000, gt=0)

    @model_validator(mode="after")
    def _windows_fit_lifetime(self) -> FeatureSettings:
        if not self.windows_days or any(w <= 0 for w in self.windows_days):
            raise ValueError(f"features.windows_days must be positive day counts, got {self.windows_days}")
        if max(self.windows_days) > self.lifetime_days:
            raise ValueError(
                f"features.lifetime_days ({self.lifetime_days}) must be >= the longest window "
                f"({max(self.windows_days)})"
            )
        return self


Mode = Literal["auto", "autoencoder", "semi_supervised", "classifier"]


class ModelSettings(_Section):
    mode: Mode = "auto"
    # auto: semi_supervised when the training users hold at least this many anomalous verdicts and as many
    # normal ones, the unsupervised autoencoder otherwise
    auto_min_labels: int = Field(20, gt=0)
    # the unsupervised model: ensemble (tail score, autoencoder, isolation forest and neighbours fused,
    # shopguard.model.ensemble) or log_autoencoder (the earlier default: the autoencoder's mean squared error)
    unsupervised: Literal["ensemble", "log_autoencoder"] = "ensemble"
    # a validation ROC-AUC below this (where labels allow one) is logged and stored as a warning
    min_validation_roc_auc: float = Field(0.7, ge=0, le=1)
    # the ensemble fuses, by robust z-scores, the tail score and the autoencoder's normalised error with an
    # isolation forest of this many trees and the distance to the k-th nearest of neighbour_reference
    # training users (k = neighbours); 0 leaves a detector out
    isolation_trees: int = Field(100, ge=0)
    neighbours: int = Field(20, ge=0)
    neighbour_reference: int = Field(2000, gt=0)
    # the ensemble as the mean of this many whole trainings (model.seed, seed + 1000, ...) in one saved
    # model: steadier alerts from one retraining to the next, at as many times the training and scoring time
    trainings: int = Field(1, gt=0)
    hidden_units: list[int] = Field(default_factory=lambda: [32])
    latent_units: int = Field(2, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    epochs: int = Field(40, gt=0)
    batch_size: int = Field(256, gt=0)
    # batches per call into Keras's compiled training step: the same updates in the same order, far fewer
    # Python round trips (docs/sizing.md: training at 1 M events ~26 -> ~20 s)
    steps_per_execution: int = Field(128, gt=0)
    learning_rate: float = Field(1e-3, gt=0)
    validation_fraction: float = Field(0.2, gt=0, lt=1)
    early_stopping_patience: int = Field(4, ge=0)
    trim_share: float = Field(0.05, ge=0, lt=0.5)
    unlabelled_sample: int = Field(2000, ge=0)
    unlabelled_weight: float = Field(0.3, ge=0)
    semi_c: float = Field(0.01, gt=0)
    classifier_dropout: float = Field(0.3, ge=0, lt=1)
    classifier_l2: float = Field(1e-3, ge=0)
    seed: int = 42
    # Snapshots to train on: the last N snapshot dates up to and including --date.
    training_snapshots: int = Field(1, gt=0)
    # Users that reach the driver for training (a hash sample above it; labelled users are always kept).
    max_training_rows: int = Field(100_000, gt=0)
    # Users left out of training altogether (by a hash of user_id), to measure quality honestly.
    holdout_share: float = Field(0.0, ge=0, lt=1)
    # budget: alert/block the top alert_budget/block_budget share of users (exact training-score quantiles);
    # precision: the lowest thresholds reaching alert_precision/block_precision on labelled validation users.
    threshold_method: Literal["budget", "precision"] = "budget"
    alert_budget: float = Field(0.01, gt=0, lt=1)
    block_budget: float = Field(0.001, gt=0, lt=1)
    alert_precision: float = Field(0.8, gt=0, le=1)
    block_precision: float = Field(0.95, gt=0, le=1)

    @model_validator(mode="after")
    def _block_stricter_than_alert(self) -> ModelSettings:
        if self.block_budget > self.alert_budget:
            raise ValueError(
                f"model.block_budget ({self.block_budget}) must be <= model.alert_budget "
                f"({self.alert_budget})"
            )
        if self.trainings > 1 and self.unsupervised != "ensemble":
            raise ValueError(
                f"model.trainings ({self.trainings}) averages the ensemble's trainings; "
                f"model.unsupervised is {self.unsupervised!r}: set it to 'ensemble' or trainings to 1"
            )
        if self.block_precision < self.alert_precision:
            raise ValueError(
                f"model.block_precision ({self.block_precision}) must be >= model.alert_precision "
                f"({self.alert_precision})"
            )
        return self

    @field_validator("unsupervised", mode="before")
    @classmethod
    def _earlier_name(cls, value: Any) -> Any:
        """`rank_ensemble`, its name while its autoencoder saw rank-normalised features, still means it."""
        return "ensemble" if value == "rank_ensemble" else value


class ScoringSettings(_Section):
    # Explicit score thresholds override the ones stored with the model.
    alert_threshold: float | None = None
    block_threshold: float | None = None
    n_reasons: int = Field(3, ge=0, le=20)
    batch_rows: int = Field(4096, gt=0)
    warm_workers: bool = True  # workers load the model and call it once while the driver reads the features
    model_version: str | None = None  # None: the newest model


class GenerateSettings(_Section):
    users: int = Field(5000, gt=0)
    days: int = Field(30, gt=0)
    end_date: date | None = None  # None: yesterday (UTC)
    seed: int = 7
    anomaly_share: float = Field(0.02, ge=0, lt=0.5)
    subtle_share: float = Field(0.25, ge=0, le=1)
    anomaly_label_share: float = Field(0.5, ge=0, le=1)
    known_good_share: float = Field(0.03, ge=0, le=1)
    label_noise: float = Field(0.0, ge=0, lt=0.5)
    dirty_share: float = Field(0.0005, ge=0, lt=0.1)
    users_per_block: int = Field(500, gt=0)
    unseen_share: float = Field(0.0, ge=0, lt=0.5)  # users committing a fraud the features were not built for
    wholesale_share: float = Field(0.0, ge=0, lt=0.5)  # legitimate, extreme-every-day business buyers


class PrivacySettings(_Section):
    # Replace user_id, device_id and ip by keyed hashes (HMAC-SHA256) right after validation.
    pseudonymise: bool = False
    key_env: str = "SHOPGUARD_PSEUDONYM_KEY"
    key_file: str | None = None  # a secrets file outside conf/, mode 600


class MaintenanceSettings(_Section):
    # vacuum keeps files younger than this; storage refuses less than 24 h (VACUUM_FLOOR_HOURS)
    retention_hours: int = Field(168, gt=0)
    # tables vacuumed side by side: each VACUUM is a listing and ~20 small Spark jobs, mostly waiting
    concurrent_tables: int = Field(4, ge=1)
    tables: list[str] = Field(
        default_factory=lambda: [
            "clicks",
            "transactions",
            "labels",
            "features",
            "scores",
            "quarantine",
            "evaluations",
            "shadow_scores",
            "run_metrics",
        ]
    )


class EvaluationSettings(_Section):
    # labels: the latest verdict on each user (any time: evaluation looks back); truth: generated data only
    against: Literal["labels", "truth"] = "labels"
    baselines: bool = True
    # The baselines are single-node scikit-learn: the driver collects every labelled user and a sample of
    # the others up to this many (the model's own metrics cover every user).
    max_baseline_rows: int = Field(100_000, gt=0)
    # The model's metrics need one score per user on the driver: above this many users besides the known
    # anomalous ones, every known one and a hashed sample of the others, weighted to stand for all of them.
    max_evaluated_rows: int = Field(1_000_000, gt=0)
    report_dir: str = "./reports"  # local folder or URI; one HTML file per evaluated date


class CatalogSettings(_Section):
    """The shared Hive metastore the jobs register their tables in (shopguard.warehouse)."""

    enabled: bool = False
    database: str = "shopguard"
    metastore_url: str = "jdbc:derby://127.0.0.1:1527/metastore;create=true"
    metastore_driver: str = "org.apache.derby.client.ClientAutoloadedDriver"
    metastore_user: str = "shopguard"
    metastore_password_env: str = "SHOPGUARD_METASTORE_PASSWORD"  # the password itself never goes in conf/
    local_metastore: bool = True  # ./submit.sh warehouse up starts Derby's network server for metastore_url
    warehouse_dir: str = "./data/warehouse"
    thrift_port: int = Field(10099, gt=0, lt=65536)


class Threshold(_Section):
    """A measure past `warn` is a warning in the log, the run metrics and the report; past `fail` it fails
    the night (exit 5) after everything is written. null: never."""

    warn: float | None = None
    fail: float | None = None

    @model_validator(mode="after")
    def _fail_beyond_warn(self) -> Threshold:
        if self.warn is not None and self.fail is not None and self.fail < self.warn:
            raise ValueError(f"fail ({self.fail}) must be >= warn ({self.warn})")
        return self


class MonitoringSettings(_Section):
    # population stability index of a feature against the champion's training snapshot (the largest counts)
    feature_psi: Threshold = Field(default_factory=lambda: Threshold(warn=0.25, fail=None))
    # population stability index of the champion's scores against its training scores
    score_psi: Threshold = Field(default_factory=lambda: Threshold(warn=0.25, fail=None))
    # the alert rate over the share the champion was calibrated to alert (model.alert_budget), as a ratio
    alert_rate_ratio: Threshold = Field(default_factory=lambda: Threshold(warn=3.0, fail=10.0))
    # rows quarantined over rows read, per input table
    quarantine_rate: Threshold = Field(default_factory=lambda: Threshold(warn=0.01, fail=0.2))
    report_features: int = Field(15, gt=0)  # the most-shifted features the night's report plots
    report_nights: int = Field(30, gt=0)  # the alert-rate history it plots


class NightlySettings(_Section):
    # when a night trains a challenger: weekly (on train_weekday), drift (when a feature's PSI passes
    # monitoring.feature_psi.warn), or never; a night without any model always trains the first one
    train: Literal["weekly", "drift", "never"] = "weekly"
    train_weekday: int = Field(6, ge=0, le=6)  # Monday 0 ... Sunday 6
    # a challenger becomes the champion when its PR-AUC on labelled users neither model trained on beats
    # the champion's by this much; `./submit.sh promote VERSION` promotes by hand, --rollback undoes
    promote_margin: float = Field(0.02, ge=0)
    promote_min_anomalies: int = Field(
        30, gt=0
    )  # fewer known anomalies to compare on: no automatic promotion
    evaluate: bool = True  # evaluate the night's scores where labels (or generated truth) exist


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # One line per running Spark stage this often (seconds); 0 turns it off.
    progress_seconds: float = Field(15.0, ge=0)


class Settings(_Section):
    profile: str = "local"
    conf_dir: Path = DEFAULT_CONF_DIR  # where the layers were read from; secrets must live elsewhere
    spark: SparkSettings = Field(default_factory=SparkSettings)
    tables: TableSettings = Field(default_factory=TableSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    columns: ColumnSettings = Field(default_factory=ColumnSettings)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    features: FeatureSettings = Field(default_factory=FeatureSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    scoring: ScoringSettings = Field(default_factory=ScoringSettings)
    generate: GenerateSettings = Field(default_factory=GenerateSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    maintenance: MaintenanceSettings = Field(default_factory=MaintenanceSettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    nightly: NightlySettings = Field(default_factory=NightlySettings)
    catalog: CatalogSettings = Field(default_factory=CatalogSettings)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge nested dicts; values of `override` win, dicts merge key by key."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_override(text: str) -> dict[str, Any]:
    """`section.key=value` -> {"section": {"key": value}}; the value is YAML (numbers, lists, null)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    dotted, raw = text.split("=", 1)
    keys = dotted.strip().split(".")
    if not all(keys):
        raise ConfigError(f"override {text!r} has an empty key; expected section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from exc
    if keys[0] == "spark" and len(keys) > 2 and keys[1] == "conf":
        # Spark keys contain dots: spark.conf.spark.sql.shuffle.partitions=4
        return {"spark": {"conf": {".".join(keys[2:]): value}}}
    nested: dict[str, Any] = {keys[-1]: value}
    for key in reversed(keys[:-1]):
        nested = {key: nested}
    return nested


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        content = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(content, dict):
        raise ConfigError(
            f"{path}: expected a mapping of sections at the top level, got {type(content).__name__}"
        )
    return content


def load_settings(
    profile: str = "local",
    conf_files: list[str] | tuple[str, ...] = (),
    overrides: list[str] | tuple[str, ...] = (),
    conf_dir: Path | str = DEFAULT_CONF_DIR,
) -> Settings:
    """Merge the configuration layers and validate them into `Settings`."""
    conf_dir = Path(conf_dir).resolve()
    if not (conf_dir / "base").is_dir():
        raise ConfigError(
            f"no configuration at {conf_dir}: expected base/ and profiles/ there "
            "(set --conf-dir or $SHOPGUARD_CONF_DIR to the repository's conf/ folder)"
        )
    layers: list[Path] = sorted((conf_dir / "base").glob("*.yml"))
    profile_file = conf_dir / "profiles" / f"{profile}.yml"
    if not profile_file.exists():
        available = sorted(p.stem for p in (conf_dir / "profiles").glob("*.yml"))
        raise ConfigError(f"unknown profile {profile!r}: no {profile_file}; expected one of {available}")
    layers.append(profile_file)
    layers.extend(sorted((conf_dir / "local").glob("*.yml")))
    for extra in conf_files:
        path = Path(extra)
        if not path.exists():
            raise ConfigError(f"--conf-file {extra}: no such file")
        layers.append(path)

    merged: dict[str, Any] = {}
    for layer in layers:
        merged = deep_merge(merged, _read_yaml(layer))
    for text in overrides:
        merged = deep_merge(merged, parse_override(text))
    merged["profile"] = profile
    merged["conf_dir"] = conf_dir
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '<top>'}: {error['msg']}"
            + (f" (got {error['input']!r})" if not isinstance(error.get("input"), dict) else "")
            for error in exc.errors()
        )
        raise ConfigError(
            f"invalid configuration ({', '.join(str(p) for p in layers)}): {problems}"
        ) from None
