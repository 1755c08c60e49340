"""The insert-only MERGE that the embedding store and the score cache write through."""

from __future__ import annotations

import threading

from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType

from jobs.tables import insert_new_rows, read_table_if_exists

SCHEMA = StructType([StructField("key", StringType(), False),
                     StructField("value", LongType(), False)])


def _writer(spark, ref: str, keys: range, results: list, errors: list) -> None:
    def missing():
        rows = spark.createDataFrame([(f"k{i}", i) for i in keys], SCHEMA)
        held = read_table_if_exists(spark, ref)
        return rows if held is None else rows.join(held.select("key"), "key", "left_anti")

    try:
        results.append(insert_new_rows(spark, ref, missing, SCHEMA, ("key",), "test table"))
    except Exception as err:  # reported by the test, with its type
        errors.append(err)


def _two_writers_at_once(spark, ref: str, first: range, second: range) -> list[int]:
    results, errors = [], []
    threads = [threading.Thread(target=_writer, args=(spark, ref, keys, results, errors))
               for keys in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, f"a writer failed: {errors!r}"
    return results


def test_two_writers_at_once_leave_each_key_once(spark, tmp_path):
    """Two jobs adding overlapping keys at the same time, to a table neither has created yet and
    then to one that exists: every key lands exactly once, and nothing is lost."""
    ref = str(tmp_path / "store")
    _two_writers_at_once(spark, ref, range(0, 60), range(30, 90))
    table = spark.read.format("delta").load(ref)
    assert table.count() == 90
    assert table.groupBy("key").count().where(F.col("count") > 1).count() == 0
    _two_writers_at_once(spark, ref, range(80, 150), range(100, 170))
    table = spark.read.format("delta").load(ref)
    assert table.count() == 170
    assert table.groupBy("key").count().where(F.col("count") > 1).count() == 0
    assert sorted(r.value for r in table.collect()) == list(range(170))
