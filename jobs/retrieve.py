"""spark-submit entry point of the retrieve stage (jobs/stages/retrieve.py).

    spark-submit jobs/retrieve.py --help
"""

from jobs.stages import shim

if __name__ == "__main__":
    shim("retrieve")
