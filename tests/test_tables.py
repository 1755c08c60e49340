"""The insert-only MERGE that the embedding store and the score cache write through."""

from __future__ import annotations

import threading

import pytest
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType

from jobs.tables import create_delta_table, insert_new_rows, read_table_if_exists

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
    # str(): a captured JVM exception's repr is only its class name.
    assert not errors, "a writer failed: " + "; ".join(
        f"{type(e).__name__}: {str(e)[:300]}" for e in errors)
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


def test_a_create_lost_to_a_concurrent_job_goes_on_and_any_other_failure_is_raised(
    spark, tmp_path, monkeypatch
):
    """The race the two writers above can hit, made certain: the other job's create lands
    between this job's check and its commit, so this one's fails; the table exists, so the job
    goes on. A create that fails with no table left behind is still an error."""
    from delta.tables import DeltaTableBuilder

    real = DeltaTableBuilder.execute

    def lose_the_race(builder):
        real(builder)  # the other job's identical create commits first
        raise RuntimeError("location is not empty and is not a Delta table")

    ref = str(tmp_path / "raced")
    monkeypatch.setattr(DeltaTableBuilder, "execute", lose_the_race)
    create_delta_table(spark, ref, SCHEMA)
    assert spark.read.format("delta").load(ref).schema == SCHEMA

    def fail(builder):
        raise RuntimeError("the storage refused the write")

    monkeypatch.setattr(DeltaTableBuilder, "execute", fail)
    with pytest.raises(RuntimeError, match="storage refused"):
        create_delta_table(spark, str(tmp_path / "never"), SCHEMA)


def test_a_create_that_finds_the_other_creators_bare_log_is_retried(spark, tmp_path, monkeypatch):
    """The create's side of the same moment, made certain: the other creator's log folder is
    there without its first commit, so this job's create fails ("not empty and not a Delta
    table") and the table does not exist yet; the retry writes every key once."""
    from jobs import tables

    real, calls = tables.create_delta_table, []

    def bare_log(spark_, ref_, schema_, properties=None):
        calls.append(ref_)
        if len(calls) == 1:
            raise RuntimeError("[DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION] Cannot create "
                               f"table ('`delta`.`{ref_}`'). The associated location is not "
                               "empty and also not a Delta table.")
        return real(spark_, ref_, schema_, properties)

    ref = str(tmp_path / "store")
    monkeypatch.setattr(tables, "create_delta_table", bare_log)
    rows = spark.createDataFrame([(f"k{i}", i) for i in range(5)], SCHEMA)
    assert insert_new_rows(spark, ref, lambda: rows, SCHEMA, ("key",), "test table") == 5
    assert len(calls) == 2
    assert sorted(r.value for r in spark.read.format("delta").load(ref).collect()) == [0, 1, 2, 3, 4]


def test_a_table_not_found_just_after_its_create_is_retried(spark, tmp_path, monkeypatch):
    """The other race, made certain: the first MERGE finds no table (the other creator's first
    commit not there yet, as Delta reports it); the retry writes every key once. Any other
    failure of the MERGE is raised at once."""
    from jobs import tables

    real, calls = tables.delta_table, []

    def not_there_yet(spark_, ref_):
        calls.append(ref_)
        if len(calls) == 1:
            raise RuntimeError(f"[DELTA_TABLE_NOT_FOUND] Delta table `{ref_}` doesn't exist.")
        return real(spark_, ref_)

    ref = str(tmp_path / "store")
    monkeypatch.setattr(tables, "delta_table", not_there_yet)
    rows = spark.createDataFrame([(f"k{i}", i) for i in range(5)], SCHEMA)
    assert insert_new_rows(spark, ref, lambda: rows, SCHEMA, ("key",), "test table") == 5
    assert len(calls) == 2
    written = spark.read.format("delta").load(ref).collect()
    assert sorted(r.value for r in written) == [0, 1, 2, 3, 4]

    def broken(spark_, ref_):
        raise RuntimeError("the storage refused the read")

    monkeypatch.setattr(tables, "delta_table", broken)
    with pytest.raises(RuntimeError, match="storage refused"):
        insert_new_rows(spark, str(tmp_path / "other"), lambda: rows, SCHEMA, ("key",), "t")
