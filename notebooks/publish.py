# Databricks notebook source
# MAGIC %md
# MAGIC # Publish the night to the serving index
# MAGIC
# MAGIC Publishes the night's top k from the reranked table to a serving index (a Delta table with
# MAGIC the change data feed on, updated by MERGE) if every gate passes: the flags of
# MAGIC `grouprank publish`, as widgets. Set `dry_run` to `true` to see the gates and the changes
# MAGIC without writing. Outside Databricks it publishes the reranked sample from the rerank
# MAGIC notebook. See docs/PUBLISHING.md.

# COMMAND ----------

from jobs.stages import publish

from jobs.stages import main as stage_main
from jobs.notebook import job_arguments, show
from jobs.session import get_session
from jobs.tables import read_table

spark = get_session("grouprank-notebook")
args = job_arguments(
    "publish",
    defaults={
        "reranked": "out/notebooks/reranked",
        "run_date": "2026-11-27",
        "index": "out/notebooks/serving",
    },
)

# COMMAND ----------

code = stage_main("publish", args.argv)
assert code == 0, "the publish job failed or a gate blocked it; see the error above"

# COMMAND ----------

# MAGIC %md
# MAGIC ## The publish log and the index

# COMMAND ----------

log_ref = args.values["log"] or publish.default_log(args.values["index"])
attempts = read_table(spark, log_ref).where(f"index = '{args.values['index']}'")
show(attempts.orderBy("attempted_at", ascending=False).select(
    "attempted_at", "action", "run_date", "outcome", "version_before", "version_after",
    "rows_inserted", "rows_updated", "rows_deleted", "message"))
if args.values["dry_run"] != "true" and attempts.where("outcome = 'published'").count():
    show(read_table(spark, args.values["index"]).orderBy("qid", "rank"))
