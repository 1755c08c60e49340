"""spark-submit entry point of the demo stage (jobs/stages/demo.py).

    spark-submit jobs/demo.py --help
"""

from jobs.stages import shim

if __name__ == "__main__":
    shim("demo")
