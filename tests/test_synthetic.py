from __future__ import annotations

import datetime as dt

import pandas as pd

from shopguard import schemas
from shopguard.anomalies import DESIGNED
from shopguard.synthetic import (
    WHOLESALE_PREFIX,
    SyntheticSpec,
    simulate_block,
    split_records,
    synthetic_records,
)

SPEC = SyntheticSpec(
    users=600,
    days=14,
    end_date=dt.date(2026, 11, 22),
    seed=11,
    anomaly_share=0.15,
    users_per_block=300,
    dirty_share=0.0,
)


def test_a_block_is_the_same_for_the_same_seed_and_differs_for_another():
    first, again = simulate_block(1, SPEC), simulate_block(1, SPEC)
    pd.testing.assert_frame_equal(first, again)
    other = simulate_block(1, SyntheticSpec(**{**SPEC.__dict__, "seed": 12}))
    assert not first["user_id"].equals(other["user_id"]) or len(first) != len(other)


def test_every_anomaly_type_is_injected_and_events_stay_inside_the_period():
    records = pd.concat([simulate_block(b, SPEC) for b in range(SPEC.blocks)])
    truth = records[records.record_type == "truth"]
    assert set(truth.anomaly_type) == set(DESIGNED)
    clicks = records[records.record_type == "click"]
    start = pd.Timestamp(SPEC.start)
    assert clicks.event_time.min() >= start and clicks.event_time.max() < start + pd.Timedelta(days=SPEC.days)
    assert set(clicks.event_type) == set(schemas.EVENT_TYPES)
    # normal users are heterogeneous: activity is heavy-tailed
    per_user = clicks.groupby("user_id").size()
    assert per_user.quantile(0.99) > 5 * per_user.median()


def test_labels_know_some_anomalies_and_some_good_users_but_not_all():
    records = pd.concat([simulate_block(b, SPEC) for b in range(SPEC.blocks)])
    labels = records[records.record_type == "label"]
    truth = records[records.record_type == "truth"]
    bad = set(labels[labels.label == 1].user_id)
    assert bad < set(truth.user_id) and len(bad) > 0
    assert (labels.label == 0).sum() > 0


def test_spark_records_split_into_the_canonical_tables(spark):
    blocks = spark.range(0, SPEC.blocks, 1, numPartitions=2)
    clicks, orders, labels, truth = split_records(synthetic_records(blocks, SPEC))
    assert clicks.schema == schemas.CLICKS and orders.schema == schemas.TRANSACTIONS
    assert labels.schema == schemas.LABELS
    local = pd.concat([simulate_block(b, SPEC) for b in range(SPEC.blocks)])
    assert clicks.count() == (local.record_type == "click").sum()
    row = clicks.where("event_type = 'review'").first()
    assert row.event_date == row.event_time.date() and 1 <= row.rating <= 5
    assert truth.where("subtle").count() == ((local.record_type == "truth") & (local.intensity < 0.6)).sum()


def test_dirty_share_breaks_a_few_rows_the_ways_real_logs_break():
    dirty = SyntheticSpec(**{**SPEC.__dict__, "dirty_share": 0.01})
    records = simulate_block(0, dirty)
    clicks = records[records.record_type == "click"]
    orders = records[records.record_type == "order"]
    assert (clicks.event_type == "teleport").any()
    assert clicks.user_id.isna().any() or (clicks.user_id.str.strip() == "").any()
    assert clicks.duplicated().any()
    assert orders.order_id.duplicated().any() and ((orders.quantity == 0) | (orders.status == "lost")).any()


def test_beyond_the_design_adds_card_testers_and_wholesale_buyers_and_leaves_the_rest_as_it_was():
    plain = simulate_block(0, SPEC)
    beyond = simulate_block(
        0, SyntheticSpec(**{**SPEC.__dict__, "unseen_share": 0.02, "wholesale_share": 0.02})
    )
    truth = beyond[beyond.record_type == "truth"]
    testers = set(truth[truth.anomaly_type == "card_testing"].user_id)
    assert testers and not testers & set(
        beyond[beyond.record_type == "label"].user_id
    )  # nobody knows them yet
    orders = beyond[(beyond.record_type == "order") & beyond.user_id.isin(testers)]
    tiny = orders[orders.amount <= 3.0]  # beside their usual orders
    assert tiny.user_id.nunique() == len(testers) and (tiny.status == "cancelled").any()
    wholesale = beyond[beyond.user_id.str.startswith(WHOLESALE_PREFIX, na=False)]
    orders = wholesale[wholesale.record_type == "order"]
    assert (
        orders.user_id.nunique() > 0
        and orders.quantity.min() >= 10
        and not set(wholesale.user_id) & set(truth.user_id)
    )
    # the usual anomalies and labels are those of the same seed without the option
    kept = truth[truth.anomaly_type != "card_testing"].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, plain[plain.record_type == "truth"].reset_index(drop=True))


def test_the_docs_list_every_anomaly_type_as_declared():
    from pathlib import Path

    from shopguard.anomalies import ANOMALIES

    text = Path(__file__).parents[1].joinpath("docs", "anomalies.md").read_text()
    documented = text.split("<!-- anomaly types: generated from shopguard.anomalies -->")[1].split(
        "<!-- end -->"
    )[0]
    rows = [line for line in documented.strip().splitlines()[2:]]
    assert [row.split("|")[1].strip(" `") for row in rows] == list(ANOMALIES)
    for row, kind in zip(rows, ANOMALIES.values(), strict=True):
        assert kind.description in row and all(feature in row for feature in kind.signature)
