"""spark-submit entry point of the train-rl stage (jobs/stages/train_rl.py).

    spark-submit jobs/train_rl.py --help
"""

from jobs.stages import shim

if __name__ == "__main__":
    shim("train-rl")
