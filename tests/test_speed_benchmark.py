"""bench/speed.py's DuckDB reference runs shopguard's own feature expressions, translated: if a feature
used a construct the translation does not know, the reference would fail or compute something else."""

from __future__ import annotations

import duckdb
import pytest
from conftest import load_script

from shopguard.config import load_settings
from shopguard.features import FeatureSpec


@pytest.fixture(scope="module")
def speed():
    return load_script("bench/speed.py")


def test_spark_sql_literals_and_functions_become_duckdb(speed):
    assert speed._duckdb("coalesce(avg(x), 0D)") == "coalesce(avg(x), (0::DOUBLE))"
    assert (
        speed._duckdb("size(collect_set(CASE WHEN a THEN b END))")
        == "count(DISTINCT (CASE WHEN a THEN b END))"
    )
    assert (
        speed._duckdb("(unix_micros(t) - unix_micros(u)) / 1e6D")
        == "(epoch_us(t) - epoch_us(u)) / (1e6::DOUBLE)"
    )
    assert speed._duckdb("to_date(event_time)") == "CAST(event_time AS DATE)"
    assert speed._duckdb("amount_sum_30d") == "amount_sum_30d"  # a feature name is left alone
    assert speed.parse_size("3M") == 3_000_000 and speed.parse_size("100K") == 100_000


def test_the_reference_features_query_computes_every_feature_on_a_tiny_day(speed):
    settings = load_settings()
    spec = FeatureSpec.from_settings(settings.features, settings.validation)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        "CREATE TABLE valid_clicks AS SELECT * FROM (VALUES "
        "('u1', TIMESTAMPTZ '2026-11-22 10:00:00+00', 'page_view', 's1', 'i1', 'c1', 'd1', '1.1.1.1', 3000, NULL),"
        "('u1', TIMESTAMPTZ '2026-11-22 10:00:02+00', 'add_to_cart', 's1', 'i1', 'c1', 'd1', '1.1.1.1', NULL, NULL),"
        "('u2', TIMESTAMPTZ '2026-11-01 08:00:00+00', 'page_view', 's2', 'i2', 'c1', 'd1', '2.2.2.2', 500, NULL)"
        ") AS t(user_id, event_time, event_type, session_id, item_id, category_id, device_id, ip, dwell_ms, rating)"
    )
    con.execute(
        "CREATE TABLE valid_transactions AS SELECT * FROM (VALUES "
        "('o1', 'u1', TIMESTAMPTZ '2026-11-22 10:01:00+00', 40.0, 'EUR', 2, 'paid', 'card', 'd1', '1.1.1.1', 'a1')"
        ") AS t(order_id, user_id, order_time, amount, currency, quantity, status, payment_method, device_id, ip,"
        " shipping_address_id)"
    )
    rows = con.execute(speed._features_sql(spec)).df().set_index("user_id")
    assert len(rows.columns) == 131  # every feature of the table, none dropped by the translation
    assert rows.loc["u1", "events_1d"] == 2 and rows.loc["u2", "events_1d"] == 0
    assert rows.loc["u1", "amount_sum_30d"] == 40.0 and rows.loc["u1", "orders_per_view_1d"] == 1.0
    assert rows.loc["u1", "shared_device_users_30d"] == 1  # u2 used the same device within 30 days


def test_events_are_counted_in_the_tables_current_version_not_summed_over_its_commits(speed, tmp_path):
    """A rerun of generate overwrites the raw tables: the events a size holds are those of the last version."""
    import pyarrow as pa
    from deltalake import write_deltalake

    path = tmp_path / "clicks"
    write_deltalake(str(path), pa.table({"user_id": ["u1", "u2", "u3"]}), mode="overwrite")
    write_deltalake(str(path), pa.table({"user_id": ["u1", "u2"]}), mode="overwrite")
    assert speed.table_rows(path) == 2


def test_the_nightly_steps_seconds_are_read_from_the_lines_the_night_logs(speed, caplog):
    """The bench times the night's steps from its log: the parser must read what the night's clock writes."""
    import datetime as dt
    import logging

    from shopguard.steps.nightly import _Clock

    clock = _Clock(dt.date(2026, 11, 22))
    logger = logging.getLogger("shopguard.nightly")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="shopguard.nightly"):
            for step in ("features", "shadow score"):
                with clock(step):
                    pass
    finally:
        logger.removeHandler(caplog.handler)
    found = dict(speed._NIGHT_STEP.findall(caplog.text))
    assert set(found) == {"features", "shadow score"}
    assert [float(s) for s in found.values()] == [round(m.value, 1) for m in clock.measures]
