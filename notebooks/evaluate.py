# Databricks notebook source
# MAGIC %md
# MAGIC # Evaluate a run against relevance judgements
# MAGIC
# MAGIC Computes trec_eval-style metrics per query and overall in Spark and writes them to the metrics
# MAGIC Delta table (the flags of `grouprank evaluate`, as widgets). Outside Databricks it evaluates
# MAGIC the reranked sample from the rerank notebook against the sample's judgements.

# COMMAND ----------

from jobs import demo, evaluate
from jobs.notebook import job_arguments, show
from jobs.session import get_session
from jobs.tables import read_table

spark = get_session("grouprank-notebook")
args = job_arguments(
    evaluate.EvaluateJob,
    defaults={
        "run": "out/notebooks/reranked",
        "qrels": str(demo.sample_qrels_path()),
        "output": "out/notebooks/metrics",
        "run_date": "2026-11-27",
        "name": "reranked",
    },
)

# COMMAND ----------

assert evaluate.main(args.argv) == 0, "the evaluate job failed; see the error above"

# COMMAND ----------

metrics = read_table(spark, args.values["output"]).where(
    f"run_date = DATE'{args.values['run_date']}' AND qid = 'all'"
)
show(metrics.select("name", "metric", "value", "num_queries").orderBy("metric"))
