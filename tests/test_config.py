from __future__ import annotations

import shutil

import pytest

from shopguard.cli import submit_args
from shopguard.config import (
    CHECKOUT,
    DEFAULT_CONF_DIR,
    ConfigError,
    checkout_of,
    checkout_path,
    load_settings,
    parse_override,
)
from shopguard.runtime import REQUIRED_SPARK_CONF


def test_the_committed_profiles_load(tmp_path):
    local = load_settings("local")
    cluster = load_settings("cluster")
    assert local.spark.master.startswith("local") and cluster.spark.master == "yarn"
    assert local.tables.path("features").endswith("/data/features")
    assert cluster.tables.path("scores") == "s3a://your-bucket/shopguard/scores"


def test_command_line_overrides_win_and_are_typed():
    settings = load_settings(
        "local",
        overrides=[
            "model.epochs=3",
            "features.windows_days=[1, 14]",
            "spark.conf.spark.sql.shuffle.partitions=4",
        ],
    )
    assert settings.model.epochs == 3 and settings.features.windows_days == [1, 14]
    assert settings.spark.conf["spark.sql.shuffle.partitions"] == "4"
    assert parse_override("scoring.alert_threshold=null") == {"scoring": {"alert_threshold": None}}


def test_a_conf_file_layers_over_the_profile(tmp_path):
    extra = tmp_path / "mine.yml"
    extra.write_text("tables:\n  root: /tmp/elsewhere\ncolumns:\n  clicks: {user_id: customer_id}\n")
    settings = load_settings("local", conf_files=[str(extra)])
    assert settings.tables.path("clicks") == "/tmp/elsewhere/raw/clicks"
    assert settings.columns.mapping("clicks")["user_id"] == "customer_id"
    assert settings.columns.mapping("clicks")["event_time"] == "event_time"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.epocs=3", r"model\.epocs: Extra inputs are not permitted"),
        ("model.epochs=many", r"model\.epochs: Input should be a valid integer.*'many'"),
        (
            "model.mode=forest",
            r"model\.mode: Input should be 'auto', 'autoencoder', 'semi_supervised' or 'classifier'",
        ),
        ("columns.clicks={who: customer}", r"unknown canonical column\(s\) \['who'\]"),
        ("features.windows_days=[7, 120]", r"lifetime_days \(90\) must be >= the longest window \(120\)"),
        ("no-equals-sign", "must look like section.key=value"),
        (
            "tables.clicks=catalog:bronze clicks",
            r"'catalog:bronze clicks' is not a table name; expected catalog:",
        ),
        ("tables.models=catalog:ml.models", r"tables\.models is a folder, not a table"),
    ],
)
def test_bad_settings_fail_at_startup_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_settings("local", overrides=[override])


def test_averaging_trainings_of_a_model_that_is_not_the_ensemble_is_refused_naming_both_settings():
    with pytest.raises(
        ConfigError, match=r"model\.trainings \(3\) .* model\.unsupervised is 'log_autoencoder'"
    ):
        load_settings("local", overrides=["model.trainings=3", "model.unsupervised=log_autoencoder"])
    assert load_settings("local", overrides=["model.trainings=3"]).model.trainings == 3


def test_a_table_may_be_given_by_its_catalog_name_and_then_has_no_path_of_its_own():
    settings = load_settings("local", overrides=["tables.clicks=catalog:bronze.clicks"])
    assert settings.tables.catalog_name("clicks") == "bronze.clicks"
    assert settings.tables.catalog_name("transactions") is None
    with pytest.raises(ValueError, match="looked up by Tables.path"):
        settings.tables.path("clicks")


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown profile 'staging'.*\['cluster', 'local', 'standalone'\]"):
        load_settings("staging")


def test_spark_submit_gets_master_and_settings_from_the_configuration():
    options = submit_args(
        "score",
        ["--date", "2026-11-22", "--set", "spark.conf.spark.executor.memory=3g", "--master", "local[2]"],
    )
    assert options[:2] == ["--master", "local[2]"]
    pairs = {options[i + 1] for i, o in enumerate(options) if o == "--conf"}
    assert "spark.executor.memory=3g" in pairs
    assert all(f"{k}={v}" in pairs for k, v in REQUIRED_SPARK_CONF.items())


def test_a_folder_without_configuration_is_refused_by_name(tmp_path):
    with pytest.raises(ConfigError, match=rf"no configuration at {tmp_path}: expected base/ and profiles/"):
        load_settings("local", conf_dir=tmp_path)


def test_the_configuration_folder_comes_from_the_environment_when_the_package_lives_elsewhere(
    tmp_path, monkeypatch
):
    conf = tmp_path / "conf"
    shutil.copytree(DEFAULT_CONF_DIR, conf, ignore=shutil.ignore_patterns("local"))
    (conf / "profiles" / "staging.yml").write_text("spark: {master: 'spark://staging:7077'}\n")
    monkeypatch.setenv("SHOPGUARD_CONF_DIR", str(conf))
    assert submit_args("summary", ["--profile", "staging", "--date", "2026-11-22"])[:2] == [
        "--master",
        "spark://staging:7077",
    ]


def test_a_path_setting_is_under_the_checkout_unless_absolute_and_null_is_off(tmp_path):
    assert checkout_path("build/delta-jars") == CHECKOUT / "build" / "delta-jars"
    assert checkout_path(str(tmp_path)) == tmp_path
    assert checkout_path(None) is None
    assert (CHECKOUT / "conf" / "base").is_dir()


def test_a_driver_importing_the_shipped_zip_finds_the_checkout_it_was_built_in():
    """A cluster job's driver imports build/shopguard.zip (--py-files) before the installed package: its
    checkout paths (the class archive, Delta's jars) must still point into the checkout."""
    assert checkout_of(CHECKOUT / "lib" / "shopguard" / "config.py") == CHECKOUT
    assert checkout_of(CHECKOUT / "build" / "shopguard.zip" / "shopguard" / "config.py") == CHECKOUT
