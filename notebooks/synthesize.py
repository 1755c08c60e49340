# Databricks notebook source
# MAGIC %md
# MAGIC # Synthesize groupwise training samples (no relevance labels)
# MAGIC
# MAGIC A pointwise and a listwise teacher rank each query's candidate pool, their rankings are fused
# MAGIC into labels, and sub-lists of several sizes become SFT/RL samples (the flags of
# MAGIC `grouprank synthesize`, as widgets). Outside Databricks it uses the bundled sample.

# COMMAND ----------

from jobs.stages import demo
from jobs.stages import main as stage_main
from jobs.notebook import job_arguments, show
from jobs.session import get_session
from jobs.tables import read_table

spark = get_session("grouprank-notebook")
args = job_arguments(
    "synthesize",
    defaults={
        "candidates": "out/notebooks/candidates",
        "output": "out/notebooks/samples",
        "run_date": "2026-11-27",
        "group_sizes": "4-8",
    },
)

# COMMAND ----------

if args.values["candidates"] == "out/notebooks/candidates":
    demo.ensure_sample(spark, args.values["candidates"])

# COMMAND ----------

assert stage_main("synthesize", args.argv) == 0, "the synthesize job failed; see the error above"

# COMMAND ----------

samples = read_table(spark, args.values["output"])
show(samples.select("sample_id", "split", "group_size", "target_ranks", "completion"))
