# Databricks notebook source
# MAGIC %md
# MAGIC # Walkthrough: retrieve, rerank with GroupRank, evaluate
# MAGIC
# MAGIC The nightly pipeline on the bundled sample, one job per cell, each called exactly as its
# MAGIC command line would call it (`grouprank retrieve`, `grouprank rerank`, `grouprank evaluate`):
# MAGIC
# MAGIC 1. the sample's documents and queries become a corpus and a queries table;
# MAGIC 2. BM25 retrieves each query's candidates from the corpus;
# MAGIC 3. the groupwise model reranks them (the `model` widget: `default`, or a model directory);
# MAGIC 4. both rankings are scored against the sample's relevance judgements, shown as a table and
# MAGIC    a plot.
# MAGIC
# MAGIC The widgets are the jobs' flags (same names, same defaults); a flag two jobs share
# MAGIC (`run_date`, `partitions`) is one widget passed to both. The table paths are not widgets:
# MAGIC they all live under `workdir` (a folder, or a database name such as `main.grouprank_demo`).

# COMMAND ----------

from jobs.stages import demo
from jobs.stages import main as stage_main
from jobs.notebook import job_arguments, metrics_figure, show, show_figure, widget
from jobs.session import get_session
from jobs.tables import read_table

spark = get_session("grouprank-notebook")
workdir = widget("workdir", "out/walkthrough")
tables = demo.walkthrough_tables(workdir)
retrieve_args = job_arguments(
    "retrieve",
    fixed={"corpus": tables["corpus"], "queries": tables["queries"],
           "output": tables["candidates"]},
)
rerank_args = job_arguments(
    "rerank",
    defaults={"run_date": "2026-11-27"},
    fixed={"candidates": tables["candidates"], "output": tables["reranked"]},
)
run_date = rerank_args.values["run_date"]

# COMMAND ----------

# MAGIC %md ## 1. The sample as a collection (corpus and queries tables)

# COMMAND ----------

demo.write_sample_collection(spark, tables["corpus"], tables["queries"])
show(read_table(spark, tables["queries"]))

# COMMAND ----------

# MAGIC %md ## 2. First stage: retrieve candidates

# COMMAND ----------

assert stage_main("retrieve", retrieve_args.argv) == 0, "the retrieve job failed; see the error above"
show(read_table(spark, tables["candidates"]).orderBy("qid", "rank")
     .select("qid", "rank", "docid", "score", "text"))

# COMMAND ----------

# MAGIC %md ## 3. Rerank the candidates with the groupwise model

# COMMAND ----------

assert stage_main("rerank", rerank_args.argv) == 0, "the rerank job failed; see the error above"
reranked = read_table(spark, tables["reranked"]).where(f"run_date = DATE'{run_date}'")
show(reranked.orderBy("qid", "rank").select("qid", "rank", "docid", "score", "model_score",
                                            "first_stage_rank", "status"))

# COMMAND ----------

# MAGIC %md
# MAGIC ## 4. Evaluate both rankings against the judgements
# MAGIC
# MAGIC The first-stage candidates are stored as `first_stage`, then the reranked run as
# MAGIC `reranked`, compared with it (per-query differences and a paired significance test).

# COMMAND ----------

for run, name, baseline in ((tables["candidates"], "first_stage", ""),
                            (tables["reranked"], "reranked", "first_stage")):
    evaluate_args = job_arguments(
        "evaluate",
        fixed={"run": run, "qrels": str(demo.sample_qrels_path()), "output": tables["metrics"],
               "run_date": run_date, "name": name, "queries": tables["queries"],
               "baseline": baseline},
    )
    assert stage_main("evaluate", evaluate_args.argv) == 0, "the evaluate job failed; see the error above"

# COMMAND ----------

means = read_table(spark, tables["metrics"]).where(
    f"run_date = DATE'{run_date}' AND qid = 'all' AND name IN ('first_stage', 'reranked')"
)
show(means.groupBy("metric").pivot("name", ["first_stage", "reranked"]).sum("value")
     .orderBy("metric"))

# COMMAND ----------

model = rerank_args.values["model"]
show_figure(metrics_figure(means.toPandas(), f"BM25, then GroupRank with model '{model}'"),
            f"{workdir}/metrics.png")
