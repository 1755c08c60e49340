"""spark-submit entry point of the ingest stage (jobs/stages/ingest.py).

    spark-submit jobs/ingest.py --help
"""

from jobs.stages import shim

if __name__ == "__main__":
    shim("ingest")
