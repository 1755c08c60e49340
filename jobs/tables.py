"""Reading and writing the project's tables by path or by metastore name, safely."""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from grouprank.formats import FormatError, open_text

log = logging.getLogger(__name__)

# catalog.schema.table, each part a plain identifier or a backtick-quoted one without backticks.
_PART = r"(?:[A-Za-z_][A-Za-z0-9_]*|`[^`]+`)"
_TABLE_NAME = re.compile(rf"^{_PART}(?:\.{_PART}){{0,2}}$")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")
# Largest local file (a TREC run or qrels file) read on the driver and sent to Spark as data.
LOCAL_FILE_LIMIT_BYTES = 256 * 2**20


class TableRefError(ValueError):
    """A table argument is neither a usable path nor a valid table name."""


def is_path(ref: str) -> bool:
    """True for filesystem paths and URIs, False for metastore table names.

    Example:
        >>> is_path("/data/candidates"), is_path("s3://b/c"), is_path("main.search.candidates")
        (True, True, False)
    """
    return bool(_URI.match(ref)) or "/" in ref or ref.startswith(".") or Path(ref).exists()


def check_table_ref(ref: str, flag: str) -> str:
    """Returns ``ref`` if it is a path or a valid table name, else raises ``TableRefError``."""
    if not ref or not ref.strip():
        raise TableRefError(f"{flag} is empty")
    if is_path(ref) or _TABLE_NAME.match(ref):
        return ref
    raise TableRefError(
        f"{flag} {ref!r} is neither a path (use ./name for a relative one) "
        "nor a table name like catalog.schema.table"
    )


def read_table(spark: SparkSession, ref: str, flag: str = "table") -> DataFrame:
    """Reads a Delta or Parquet path, or a metastore table.

    A local directory with ``_delta_log`` is read as Delta, any other local path as Parquet; a
    remote URI is tried as Delta first, then Parquet.
    """
    check_table_ref(ref, flag)
    if not is_path(ref):
        return spark.read.table(ref)
    local = Path(ref)
    if not _URI.match(ref) or ref.startswith("file:"):
        local = Path(ref.removeprefix("file:"))
        if not local.exists():
            raise TableRefError(f"{flag} {ref!r} does not exist")
        fmt = "delta" if (local / "_delta_log").is_dir() else "parquet"
        return spark.read.format(fmt).load(spark_path(ref))
    try:
        return spark.read.format("delta").load(ref)
    except Exception:  # not a Delta table: fall back to Parquet, which raises its own error
        return spark.read.parquet(ref)


def local_file(ref: str, flag: str) -> Path:
    """A local file named on the command line, if it is small enough to read on the driver.

    Only this process (the driver, or a Spark Connect client) can see its local disk; executors
    on other machines cannot, so such a file is read here and sent to Spark as data. A larger
    one is refused with a ``TableRefError`` that says to pass a table instead.
    """
    path = Path(ref)
    size = path.stat().st_size
    if size > LOCAL_FILE_LIMIT_BYTES:
        raise TableRefError(
            f"{flag} {ref!r} is a local file of {size / 2**20:.0f} MiB, over the "
            f"{LOCAL_FILE_LIMIT_BYTES // 2**20} MiB read on the driver (executors cannot see "
            "the driver's files); load it into a table on shared storage or in the metastore "
            "and pass that table"
        )
    return path


def read_local_lines(spark: SparkSession, ref: str, flag: str) -> DataFrame:
    """A local text file's lines (``.gz`` decompressed) as a DataFrame with one string column,
    ``value``, like ``spark.read.text`` but read on the driver (see ``local_file``).

    Example:
        >>> read_local_lines(spark, "run.txt", "--run").count()  # doctest: +SKIP
        1000
    """
    path = local_file(ref, flag)
    with open_text(path) as handle:
        try:
            # Lines end at \n only (after universal newlines), as in spark.read.text.
            lines = handle.read().split("\n")
        except UnicodeDecodeError as err:
            raise FormatError(path, None, f"not UTF-8 text ({err})") from err
    return spark.createDataFrame(pa.table({"value": pa.array(lines, pa.string())}))


def write_run_date_partition(
    df: DataFrame, ref: str, run_date: dt.date, flag: str = "--output"
) -> None:
    """Writes ``df`` as the ``run_date`` partition of a Delta table, replacing only that date.

    Delta's ``replaceWhere`` makes the write atomic and idempotent: a rerun of a date replaces
    that date's rows and leaves every other date untouched.
    """
    check_table_ref(ref, flag)
    if not isinstance(run_date, dt.date):
        raise TypeError(f"run_date must be a date, got {type(run_date).__name__}")
    writer = (
        df.write.format("delta")
        .mode("overwrite")
        .partitionBy("run_date")
        # run_date is a parsed date, so the predicate cannot carry anything but a date literal.
        .option("replaceWhere", f"run_date = DATE'{run_date.isoformat()}'")
        # Columns a newer version adds (e.g. model_digest) are added to an existing table.
        .option("mergeSchema", "true")
    )
    if is_path(ref):
        writer.save(spark_path(ref))
    else:
        writer.saveAsTable(ref)


def read_table_if_exists(spark: SparkSession, ref: str, flag: str = "table") -> DataFrame | None:
    """``read_table``, or None when the path or table does not exist (yet)."""
    try:
        return read_table(spark, ref, flag)
    except TableRefError:
        if not is_path(ref) or Path(ref.removeprefix("file:")).exists():
            raise
        return None
    except Exception as err:  # AnalysisException: no such table or path
        if "NOT_FOUND" in str(err) or "does not exist" in str(err).lower():
            return None
        raise


def partition_rows(spark: SparkSession, ref: str, run_date: dt.date) -> int:
    """Rows in the ``run_date`` partition of a table; 0 if the table does not exist yet."""
    table = read_table_if_exists(spark, ref)
    if table is None or "run_date" not in table.columns:
        return 0
    return table.where(table["run_date"] == run_date).count()


def check_empty_allowed(
    spark: SparkSession, ref: str, run_date: dt.date, allow_empty: bool, source_flag: str
) -> None:
    """Refuses to replace a non-empty run-date partition with nothing, unless allowed.

    An empty input is far more often an upstream failure than a real empty night; writing it
    would wipe the night's results. Raises ``ValueError`` naming ``--allow-empty``.
    """
    if allow_empty:
        return
    existing = partition_rows(spark, ref, run_date)
    if existing:
        raise ValueError(
            f"{source_flag} is empty but {ref} already holds {existing} rows for run_date "
            f"{run_date}; refusing to replace them with nothing (pass --allow-empty to do it)"
        )


def spark_path(ref: str) -> str:
    """A local relative path made absolute, so the JVM (whose working directory is where the
    session started) and Python (which may have changed directory since) mean the same place.

    Example:
        >>> spark_path("s3://bucket/t"), spark_path("/data/t")
        ('s3://bucket/t', '/data/t')
    """
    if _URI.match(ref):
        return ref
    return str(Path(ref).expanduser().resolve())


def parse_run_date(value: str) -> dt.date:
    """Parses ``--run-date`` (YYYY-MM-DD), with an error that names the flag.

    Example:
        >>> parse_run_date("2026-11-27")
        datetime.date(2026, 11, 27)
    """
    try:
        return dt.date.fromisoformat(value)
    except ValueError as err:
        raise ValueError(f"--run-date {value!r} is not a date in YYYY-MM-DD form") from err


def write_delta(
    df: DataFrame,
    ref: str,
    flag: str = "--output",
    replace_where: str | None = None,
    partition_by: tuple[str, ...] = (),
) -> None:
    """Writes ``df`` as a Delta table by path or name: the whole table, or with ``replace_where``
    only the rows matching that predicate (atomic either way, so a rerun is idempotent).

    Replacing a whole table also replaces its schema; a ``replace_where`` write keeps it.

    Example:
        >>> write_delta(corpus, "/data/vaswani/corpus")  # doctest: +SKIP
    """
    check_table_ref(ref, flag)
    writer = df.write.format("delta").mode("overwrite")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    if replace_where is None:
        writer = writer.option("overwriteSchema", "true")
    else:
        writer = writer.option("replaceWhere", replace_where)
    if is_path(ref):
        writer.save(spark_path(ref))
    else:
        writer.saveAsTable(ref)


def delta_table(spark: SparkSession, ref: str):
    """The ``DeltaTable`` at a path or with a metastore name."""
    from delta.tables import DeltaTable

    if is_path(ref):
        return DeltaTable.forPath(spark, spark_path(ref))
    return DeltaTable.forName(spark, ref)


def delta_table_exists(spark: SparkSession, ref: str) -> bool:
    """True when ``ref`` (path or name) is a Delta table with at least one commit."""
    from delta.tables import DeltaTable

    if is_path(ref):
        return DeltaTable.isDeltaTable(spark, spark_path(ref))
    return spark.catalog.tableExists(ref)


def create_delta_table(
    spark: SparkSession, ref: str, schema: StructType, properties: dict[str, str] | None = None
) -> None:
    """Creates the Delta table ``ref`` (path or name) with ``schema`` unless it exists.

    Two jobs creating the same table at once race: the loser's create can fail in several ways
    (a protocol or metadata conflict, or a location that is "not empty and not a Delta table"
    because the winner's log folder appeared between its check and its commit). Whatever the
    error, if the table exists afterwards the other job made it, and that is what was wanted.
    """
    from delta.tables import DeltaTable

    builder = DeltaTable.createIfNotExists(spark).addColumns(schema)
    builder = builder.location(spark_path(ref)) if is_path(ref) else builder.tableName(ref)
    for key, value in (properties or {}).items():
        builder = builder.property(key, value)
    try:
        builder.execute()
    except Exception as err:
        if not delta_table_exists(spark, ref):
            raise
        log.info("%s was created by a concurrent job (%s)", ref, type(err).__name__)


# A concurrent commit to the same table is retried this many times in all.
MERGE_ATTEMPTS = 4
# Delta's optimistic-concurrency conflicts, which a retry against the new snapshot resolves:
# Concurrent{Append,DeleteRead,DeleteDelete,Transaction}Exception, and Protocol/MetadataChanged,
# which two writers creating the same table at once get (the one whose CREATE lost). And a table
# "not found" just after this job created it or saw it created: the other creator's log folder
# is there but its first commit is not yet (the two-writer test failed so once, stop 39). The
# same moment seen by this job's own create: a location "not empty and not a Delta table"
# (stop 41, once).
_CONFLICT = re.compile(r"Concurrent|ProtocolChanged|MetadataChanged|DELTA_TABLE_NOT_FOUND"
                       r"|DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION")


def insert_new_rows(
    spark: SparkSession, ref: str, compute: Callable[[], DataFrame], schema: StructType,
    key: tuple[str, ...], what: str,
) -> int:
    """Appends the rows ``compute()`` returns whose ``key`` the Delta table ``ref`` lacks, by an
    insert-only MERGE (the table is created with ``schema`` if absent); returns the rows given.

    Two jobs doing this at once, a rerun, or a job killed before its commit leave the table
    consistent: only keys the table does not hold are inserted, Delta commits atomically, and a
    concurrent-commit conflict is retried against the new snapshot (``compute`` is called again,
    so it can leave out what the other job added). Nothing is committed when there is nothing
    to add.
    """
    for attempt in range(1, MERGE_ATTEMPTS + 1):
        new = compute().persist()
        try:
            count = new.count()
            if not count:
                return 0
            create_delta_table(spark, ref, schema)
            target = delta_table(spark, ref)
            condition = " AND ".join(f"s.`{k}` = n.`{k}`" for k in key)
            target.alias("s").merge(new.alias("n"), condition).whenNotMatchedInsertAll().execute()
            return count
        except Exception as err:
            if not _CONFLICT.search(type(err).__name__ + str(err)[:300]) or (
                attempt == MERGE_ATTEMPTS
            ):
                raise
            log.warning("%s %s changed under us (%s); retrying", what, ref, type(err).__name__)
            time.sleep(attempt)
        finally:
            new.unpersist()
    raise AssertionError("unreachable")
