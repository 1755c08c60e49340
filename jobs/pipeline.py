"""spark-submit entry point of the pipeline stage (jobs/stages/pipeline.py).

    spark-submit jobs/pipeline.py --help
"""

from jobs.stages import shim

if __name__ == "__main__":
    shim("pipeline")
