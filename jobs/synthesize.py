"""spark-submit entry point of the synthesize stage (jobs/stages/synthesize.py).

    spark-submit jobs/synthesize.py --help
"""

from jobs.stages import shim

if __name__ == "__main__":
    shim("synthesize")
