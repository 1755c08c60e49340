"""Column checks shared by every table schema."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

# Types a column may arrive as and still be read as the declared type (widened with a cast).
_COMPATIBLE: dict[type[T.DataType], tuple[type[T.DataType], ...]] = {
    T.DoubleType: (T.FloatType, T.IntegerType, T.LongType, T.ShortType, T.DecimalType),
    T.IntegerType: (T.ShortType, T.ByteType, T.LongType),
    T.LongType: (T.IntegerType, T.ShortType, T.ByteType),
}

# Examples of bad rows named in an error.
_EXAMPLES = 5


class SchemaError(ValueError):
    """A table does not match its declared schema; the message names every offending column."""


def check_columns(
    df: DataFrame, schema: T.StructType, required: set[str], table: str
) -> DataFrame:
    """Checks ``df`` against ``schema`` and returns it with declared columns cast to their types.

    Columns in ``schema`` but not in ``required`` are optional. Extra columns are kept untouched.
    Raises ``SchemaError`` listing every missing or mistyped column at once, before any work runs.

    Example:
        >>> check_columns(df, CANDIDATES, CANDIDATES_REQUIRED, "candidates")  # doctest: +SKIP
    """
    actual = {f.name: f.dataType for f in df.schema.fields}
    problems: list[str] = []
    casts: dict[str, T.DataType] = {}
    for field in schema.fields:
        if field.name not in actual:
            if field.name in required:
                problems.append(f"missing column '{field.name}' ({field.dataType.simpleString()})")
            continue
        got = actual[field.name]
        # Same type up to nullability: Delta and Parquet read arrays back as containsNull=true.
        if got.simpleString() == field.dataType.simpleString():
            continue
        if isinstance(got, _COMPATIBLE.get(type(field.dataType), ())):
            casts[field.name] = field.dataType
            continue
        problems.append(
            f"column '{field.name}' has type {got.simpleString()}, "
            f"expected {field.dataType.simpleString()}"
        )
    if problems:
        raise SchemaError(f"{table} table: " + "; ".join(problems))
    for name, dtype in casts.items():
        df = df.withColumn(name, df[name].cast(dtype))
    return df


def check_rows(df: DataFrame, table: str, keys: list[str], bad: Column, what: str) -> DataFrame:
    """Returns ``df`` if no row is ``bad`` and no key repeats; else raises ``SchemaError`` with
    up to five examples of each problem. One Spark job when the table is clean."""
    stats = (
        df.groupBy(*keys)
        .agg(F.count(F.lit(1)).alias("_n"), F.max(bad.cast("int")).alias("_bad"))
        .agg(F.sum((F.col("_n") > 1).cast("int")).alias("dupes"), F.sum("_bad").alias("bad"))
        .first()
    )
    problems = []
    if stats["bad"]:
        problems.append(f"{what}, e.g. {_examples(df.where(bad))}")
    if stats["dupes"]:
        repeats = df.groupBy(*keys).count().where(F.col("count") > 1)
        problems.append(f"{stats['dupes']} repeated ({', '.join(keys)}), e.g. (with copies) "
                        f"{_examples(repeats)}")
    if problems:
        raise SchemaError(f"{table} table has " + "; ".join(problems))
    return df


def _examples(df: DataFrame) -> list[tuple]:
    return [tuple(r) for r in df.limit(_EXAMPLES).collect()]
