"""spark-submit entry point of the publish stage (jobs/stages/publish.py).

    spark-submit jobs/publish.py --help
"""

from jobs.stages import shim

if __name__ == "__main__":
    shim("publish")
