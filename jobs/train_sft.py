"""spark-submit entry point of the train-sft stage (jobs/stages/train_sft.py).

    spark-submit jobs/train_sft.py --help
"""

from jobs.stages import shim

if __name__ == "__main__":
    shim("train-sft")
