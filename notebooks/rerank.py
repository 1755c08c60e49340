# Databricks notebook source
# MAGIC %md
# MAGIC # Rerank a candidates table with GroupRank
# MAGIC
# MAGIC Splits each query's candidates into groups, scores every group with one call of the groupwise
# MAGIC model, fuses the scores with the first stage and writes the run date's partition of the reranked
# MAGIC Delta table. The widgets are the flags of `grouprank rerank` (same names and defaults); this
# MAGIC notebook calls the same job function. Outside Databricks it reranks the bundled sample.

# COMMAND ----------

from jobs.stages import demo
from jobs.stages import main as stage_main
from jobs.notebook import job_arguments, show
from jobs.session import get_session
from jobs.tables import read_table

spark = get_session("grouprank-notebook")
args = job_arguments(
    "rerank",
    defaults={
        "candidates": "out/notebooks/candidates",
        "output": "out/notebooks/reranked",
        "run_date": "2026-11-27",
    },
)

# COMMAND ----------

# MAGIC %md Local runs only: the bundled sample is the default input (written once if missing).

# COMMAND ----------

if args.values["candidates"] == "out/notebooks/candidates":
    demo.ensure_sample(spark, args.values["candidates"])

# COMMAND ----------

assert stage_main("rerank", args.argv) == 0, "the rerank job failed; see the error above"

# COMMAND ----------

reranked = read_table(spark, args.values["output"]).where(
    f"run_date = DATE'{args.values['run_date']}'"
)
show(reranked.orderBy("qid", "rank").select("qid", "rank", "docid", "score", "model_score",
                                            "first_stage_rank", "status"))
