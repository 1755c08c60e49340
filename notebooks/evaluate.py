# Databricks notebook source
# MAGIC %md
# MAGIC # Evaluate a run against relevance judgements
# MAGIC
# MAGIC Computes trec_eval-style metrics per query and overall in Spark and writes them to the metrics
# MAGIC Delta table (the flags of `grouprank evaluate`, as widgets). Outside Databricks it evaluates
# MAGIC the reranked sample from the rerank notebook against the sample's judgements. With
# MAGIC `calibration_bins` above 0 it also bins the run's model scores and ends with a reliability
# MAGIC plot: the share of relevant documents per score bin, to choose `grouprank publish
# MAGIC --min-score` from data.

# COMMAND ----------

from jobs.stages import demo

from jobs.stages import main as stage_main
from jobs.notebook import job_arguments, reliability_figure, show, show_figure
from jobs.session import get_session
from jobs.tables import read_table

spark = get_session("grouprank-notebook")
args = job_arguments(
    "evaluate",
    defaults={
        "run": "out/notebooks/reranked",
        "qrels": str(demo.sample_qrels_path()),
        "output": "out/notebooks/metrics",
        "run_date": "2026-11-27",
        "name": "reranked",
        "calibration_bins": 10,
    },
)

# COMMAND ----------

assert stage_main("evaluate", args.argv) == 0, "the evaluate job failed; see the error above"

# COMMAND ----------

metrics = read_table(spark, args.values["output"]).where(
    f"run_date = DATE'{args.values['run_date']}' AND qid = 'all' "
    f"AND name = '{args.values['name']}'"
)
show(metrics.where("metric NOT LIKE '%@bin%'").select("name", "metric", "value", "num_queries")
     .orderBy("metric"))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Reliability of the model score
# MAGIC
# MAGIC Bars: the share of relevant documents among those whose model score fell in each bin (the
# MAGIC number above a bar is how many documents it rests on); dashed: where a calibrated score
# MAGIC (score / 10) would put them. A `--min-score` at the lower edge of the first bin whose share
# MAGIC is high enough keeps only documents that are that likely relevant.

# COMMAND ----------

bins = int(args.values["calibration_bins"] or 0)
if bins:
    calibration = metrics.where("metric LIKE '%@bin%' OR metric = 'ECE'").toPandas()
    show(metrics.where("metric LIKE '%@bin%' OR metric = 'ECE'")
         .select("metric", "value", "num_queries").orderBy("metric"))
    show_figure(reliability_figure(calibration, bins, args.values["name"]),
                "out/notebooks/reliability.png")
