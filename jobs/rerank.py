"""spark-submit entry point of the rerank stage (jobs/stages/rerank.py).

    spark-submit jobs/rerank.py --help
"""

from jobs.stages import shim

if __name__ == "__main__":
    shim("rerank")
