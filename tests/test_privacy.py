from __future__ import annotations

import hashlib
import hmac

import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from shopguard.privacy import PseudonymKeyError, load_key, pseudonym, pseudonym_column, pseudonymise
from shopguard.validation import SOURCE

KEY = b"a-key-of-at-least-sixteen-bytes"


@pytest.mark.parametrize("key", [KEY, b"k" * 100])  # keys longer than a SHA-256 block are hashed first
def test_the_spark_pseudonym_is_exactly_hmac_sha256(spark, key):
    values = ["u00000001", "Ünïcode-ïd", "10.0.0.1", ""]
    df = spark.createDataFrame([(v,) for v in values], "v string")
    got = [r.p for r in df.select(pseudonym_column(F.col("v"), key).alias("p")).collect()]
    assert got == [hmac.new(key, v.encode(), hashlib.sha256).hexdigest()[:32] for v in values]
    assert got == [pseudonym(v, key) for v in values]


def test_pseudonymise_replaces_ids_in_the_row_and_in_its_quarantine_copy(spark):
    schema = T.StructType(
        [
            T.StructField("user_id", T.StringType()),
            T.StructField("device_id", T.StringType()),
            T.StructField("ip", T.StringType()),
            T.StructField("item_id", T.StringType()),
            T.StructField(SOURCE, T.StructType([T.StructField("customer", T.StringType()),
                                                T.StructField("ip", T.StringType())])),
        ]
    )  # fmt: skip
    df = spark.createDataFrame(
        [("u1", "d1", "1.2.3.4", "i1", (" U1", "1.2.3.4")), (None, None, None, "i2", (None, None))], schema
    )
    rows = df.transform(pseudonymise("clicks", KEY, {"user_id": "customer"})).collect()
    first, empty = rows
    assert (first.user_id, first.device_id, first.ip) == (
        pseudonym("u1", KEY),
        pseudonym("d1", KEY),
        pseudonym("1.2.3.4", KEY),
    )
    assert first.item_id == "i1"  # not personal
    assert first[SOURCE].customer == pseudonym("u1", KEY) and first[SOURCE].ip == pseudonym("1.2.3.4", KEY)
    assert empty.user_id is None and empty[SOURCE].customer is None  # missing stays missing


def test_the_key_comes_from_the_environment_first(monkeypatch, tmp_path):
    monkeypatch.setenv("SG_KEY", "from-the-environment-0123")
    assert load_key("SG_KEY", None, tmp_path / "conf") == b"from-the-environment-0123"


def test_a_key_file_is_refused_inside_conf_or_readable_by_others(monkeypatch, tmp_path):
    monkeypatch.delenv("SG_KEY", raising=False)
    conf = tmp_path / "conf"
    (conf / "local").mkdir(parents=True)
    inside = conf / "local" / "pseudonym.key"
    inside.write_text("k" * 32)
    inside.chmod(0o600)
    with pytest.raises(PseudonymKeyError, match="keep secrets out of conf/"):
        load_key("SG_KEY", str(inside), conf)
    outside = tmp_path / "secrets" / "pseudonym.key"
    outside.parent.mkdir()
    outside.write_text("k" * 32 + "\n")
    outside.chmod(0o644)
    with pytest.raises(PseudonymKeyError, match="chmod 600"):
        load_key("SG_KEY", str(outside), conf)
    outside.chmod(0o600)
    assert load_key("SG_KEY", str(outside), conf) == b"k" * 32


def test_no_key_or_a_short_key_is_refused(monkeypatch, tmp_path):
    monkeypatch.delenv("SG_KEY", raising=False)
    with pytest.raises(PseudonymKeyError, match=r"set \$SG_KEY or privacy.key_file"):
        load_key("SG_KEY", None, tmp_path)
    monkeypatch.setenv("SG_KEY", "short")
    with pytest.raises(PseudonymKeyError, match="at least 16 bytes"):
        load_key("SG_KEY", None, tmp_path)
