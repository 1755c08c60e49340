"""DataFrame transforms of the synthesis job (no I/O): candidates in, training samples out.

    samples = synthesize(checked_candidates, settings, pointwise, listwise, run_date)
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from grouprank.synthesis import SynthesisSettings
from grouprank.teachers import TeacherSpec
from jobs.transforms import default_parallelism, prepare_candidates
from schemas.samples import POOL_SOURCES, SAMPLES
from udfs.synthesis import synthesize_udf


def pool_sources(candidates: DataFrame, settings: SynthesisSettings) -> DataFrame:
    """One row per query: its scoreable candidates in first-stage order, cut at ``pool_depth``.

    Candidates with a blank query or text cannot be judged by a teacher and are left out.
    """
    usable = prepare_candidates(candidates).where(F.col("skip").isNull())
    order = Window.partitionBy("qid").orderBy("first_stage_rank", "docid")
    ranked = usable.withColumn("pos", F.row_number().over(order)).where(
        F.col("pos") <= settings.pool_depth
    )
    members = F.sort_array(
        F.collect_list(F.struct("pos", "docid", "text", "score", "first_stage_rank"))
    )
    return (
        ranked.groupBy("qid")
        .agg(F.first("query").alias("query"), members.alias("m"))
        .select(
            "qid",
            "query",
            F.transform("m", lambda x: x["docid"]).alias("docids"),
            F.transform("m", lambda x: x["text"]).alias("texts"),
            F.transform("m", lambda x: x["score"]).alias("scores"),
            F.transform("m", lambda x: x["first_stage_rank"]).alias("ranks"),
        )
        .select(*POOL_SOURCES.fieldNames())
    )


def synthesize(
    candidates: DataFrame,
    settings: SynthesisSettings,
    pointwise: TeacherSpec,
    listwise: TeacherSpec,
    run_date: dt.date,
    chat_model: str = "smollm2",
    max_doc_tokens: int = 256,
    partitions: int | None = None,
) -> DataFrame:
    """Builds the samples table (``schemas.SAMPLES``) from a checked candidates table. Lazy."""
    spark = candidates.sparkSession
    partitions = partitions or default_parallelism(spark)
    udf = synthesize_udf(settings, pointwise, listwise, chat_model, max_doc_tokens)
    samples_no_date = T.StructType([f for f in SAMPLES.fields if f.name != "run_date"])
    return (
        pool_sources(candidates, settings)
        .repartition(partitions, "qid")
        .mapInPandas(udf, samples_no_date)
        .withColumn("run_date", F.lit(run_date).cast(T.DateType()))
        .select(*SAMPLES.fieldNames())
    )
