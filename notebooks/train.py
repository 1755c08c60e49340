# Databricks notebook source
# MAGIC %md
# MAGIC # Train a groupwise reranker: SFT, then RL
# MAGIC
# MAGIC `grouprank train-sft` fine-tunes the `base` backbone on the samples' sft split;
# MAGIC `grouprank train-rl` continues a checkpoint with GRPO and the group-ranking reward on the rl
# MAGIC split. The widgets are the two jobs' flags (same names, same defaults); a flag both take
# MAGIC (`samples`, `epochs`, `batch_size`, ...) is one widget passed to both. Two more:
# MAGIC
# MAGIC - `stage`: `sft` (the default), `rl` or `both` (SFT, then RL from its checkpoint);
# MAGIC - `output`: a folder; SFT writes `OUTPUT/sft` and RL `OUTPUT/rl`. With `both`, RL starts from
# MAGIC   `OUTPUT/sft`; with `rl` alone, from the `init` widget.
# MAGIC
# MAGIC Each checkpoint is what `grouprank rerank --model` loads. Outside Databricks it trains the
# MAGIC group encoder (`minilm`) on the samples the synthesize notebook wrote; their three queries
# MAGIC leave its rl split empty at `rl_fraction` 0.2, hence SFT alone by default.

# COMMAND ----------


from jobs.stages import main as stage_main
from jobs.notebook import (
    curve_figure,
    job_arguments,
    show,
    show_figure,
    training_curve,
    widget,
)
from jobs.session import get_session

spark = get_session("grouprank-notebook")
stage = widget("stage", "sft")
if stage not in ("sft", "rl", "both"):
    raise ValueError(f"the stage widget must be sft, rl or both, not {stage!r}")
stages = ["sft", "rl"] if stage == "both" else [stage]
output = widget("output", "out/notebooks/model")
defaults = {"samples": "out/notebooks/samples", "base": "minilm", "init": f"{output}/sft"}
sft_args = job_arguments(
    "train-sft", defaults=defaults, fixed={"output": f"{output}/sft"}
)
rl_args = job_arguments(
    "train-rl",
    defaults=defaults,
    fixed={"output": f"{output}/rl", **({"init": f"{output}/sft"} if stage == "both" else {})},
)

# COMMAND ----------

# MAGIC %md ## 1. SFT on the sft split

# COMMAND ----------

if "sft" in stages:
    assert stage_main("train-sft", sft_args.argv) == 0, "the train-sft job failed; see the error above"

# COMMAND ----------

# MAGIC %md ## 2. RL (GRPO) on the rl split

# COMMAND ----------

if "rl" in stages:
    assert stage_main("train-rl", rl_args.argv) == 0, "the train-rl job failed; see the error above"

# COMMAND ----------

# MAGIC %md
# MAGIC ## 3. Training curves
# MAGIC
# MAGIC From each checkpoint's `training_summary.json`: the loss per step for SFT, the mean reward
# MAGIC of the rollouts per step for RL.

# COMMAND ----------

for name in stages:
    curve = training_curve(f"{output}/{name}")
    show(spark.createDataFrame(curve))
    show_figure(curve_figure(curve, f"train-{name} into {output}/{name}"),
                f"{output}/{name}-curve.png")
