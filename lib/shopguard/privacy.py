"""Pseudonymous identifiers: user, device and IP replaced by a keyed hash (HMAC-SHA256) right after
validation, so raw identifiers never reach the features, scores or quarantine tables, nor the logs.

The same key gives the same pseudonym on every night and in every table, so joins, labels and reruns
still line up; without the key nobody can turn a pseudonym back into the identifier. The key comes from an
environment variable or a secrets file, never from conf/.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from pathlib import Path

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from shopguard.validation import SOURCE

PSEUDONYMISED: dict[str, tuple[str, ...]] = {
    "clicks": ("user_id", "device_id", "ip"),
    "transactions": ("user_id", "device_id", "ip"),
    "labels": ("user_id",),
    "truth": ("user_id",),
}
PSEUDONYM_HEX_CHARS = 32  # 128 bits: no collisions among billions of ids
_BLOCK = 64  # SHA-256 block size


class PseudonymKeyError(ValueError):
    """The pseudonymisation key is missing, too short or kept where it must not be."""


def load_key(env_var: str, key_file: str | None, conf_dir: Path) -> bytes:
    """The key from `env_var`, else from `key_file`; refuses a key file inside the configuration folder."""
    value = os.environ.get(env_var)
    if value:
        key = value.encode()
    elif key_file:
        path = Path(key_file).expanduser().resolve()
        if path.is_relative_to(Path(conf_dir).resolve()):
            raise PseudonymKeyError(
                f"privacy.key_file {path} is inside {conf_dir}: keep secrets out of conf/"
            )
        if not path.is_file():
            raise PseudonymKeyError(f"privacy.key_file {path} does not exist")
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise PseudonymKeyError(f"privacy.key_file {path} is readable by others; chmod 600 it")
        key = path.read_bytes().strip()
    else:
        raise PseudonymKeyError(
            f"privacy.pseudonymise is on but there is no key: set ${env_var} or privacy.key_file"
        )
    if len(key) < 16:
        raise PseudonymKeyError("the pseudonymisation key must be at least 16 bytes")
    return key


def pseudonym(value: str, key: bytes) -> str:
    """The pseudonym of one identifier, in Python (for look-ups and tests)."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX_CHARS]


def pseudonym_column(column: Column, key: bytes) -> Column:
    """HMAC-SHA256 in Spark's own functions (no Python UDF): sha2((K^opad) || sha2((K^ipad) || m))."""
    block = hashlib.sha256(key).digest() if len(key) > _BLOCK else key
    block = block.ljust(_BLOCK, b"\0")
    inner_pad = bytes(b ^ 0x36 for b in block).hex()
    outer_pad = bytes(b ^ 0x5C for b in block).hex()
    inner = F.unhex(F.sha2(F.concat(F.unhex(F.lit(inner_pad)), column.cast("binary")), 256))
    outer = F.sha2(F.concat(F.unhex(F.lit(outer_pad)), inner), 256)
    return F.substring(outer, 1, PSEUDONYM_HEX_CHARS)


def pseudonymise(table: str, key: bytes, mapping: dict[str, str] | None = None):
    """DataFrame -> DataFrame with the identifiers of `table` replaced by pseudonyms, in the canonical
    columns and, where present, in the original row kept for quarantine (`_source`, source names)."""
    columns = PSEUDONYMISED[table]
    mapping = mapping or {}

    def transform(df: DataFrame) -> DataFrame:
        out = df.withColumns({c: pseudonym_column(F.col(c), key) for c in columns if c in df.columns})
        if SOURCE in df.columns:
            source_type = df.schema[SOURCE].dataType
            assert isinstance(source_type, T.StructType)
            fields = set(source_type.fieldNames())
            source = F.col(SOURCE)
            for c in columns:
                name = mapping.get(c, c)
                if name in fields:
                    # the normalised value's pseudonym, so quarantine and features agree
                    source = source.withField(name, F.col(c) if c in df.columns else F.lit(None))
            out = out.withColumn(SOURCE, source)
        return out

    return transform
