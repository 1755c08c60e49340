"""The pipeline runs table: one row per (run date, stage), replaced when a night is rerun."""

from pyspark.sql import types as T

PIPELINE_RUNS = T.StructType(
    [
        T.StructField("run_date", T.DateType(), False),
        T.StructField("stage", T.StringType(), False),
        # ok | failed
        T.StructField("status", T.StringType(), False),
        T.StructField("seconds", T.DoubleType(), False),
        # The stage's own summary (counts, statuses, metrics) or its error, as JSON.
        T.StructField("details", T.StringType(), False),
    ]
)
