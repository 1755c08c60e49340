"""spark-submit entry point of the evaluate stage (jobs/stages/evaluate.py).

    spark-submit jobs/evaluate.py --help
"""

from jobs.stages import shim

if __name__ == "__main__":
    shim("evaluate")
