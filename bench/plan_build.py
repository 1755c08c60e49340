"""How long the driver takes to build a tiny rerank job's plan (no Spark action), per setting.

    .venv/bin/python bench/plan_build.py
    .venv/bin/python bench/plan_build.py --conf spark.python.sql.dataFrameDebugging.enabled=true

One process, one local[2] session with ``jobs.session.TINY_TABLE_CONF`` (the demo's and the
tests' shared session) and any ``--conf`` over it: a 24-row in-memory candidates table, then
``--builds`` times the rerank job's plan (``rerank_with_scores``, the default model, a fixed
fusion weight so no agreement job runs), each build timed up to its analysed schema. The first
``--skip`` builds warm the JVM's code and are left out; prints the median and the minimum.
A setting PySpark reads once per process (as the DataFrame debugging switch) needs its own
process per value, so pairs are separate runs of this script.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conf", action="append", default=[], help="key=value over the session")
    parser.add_argument("--builds", type=int, default=25)
    parser.add_argument("--skip", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("GROUPRANK_CACHE", str(Path.home() / ".cache" / "grouprank"))
    from grouprank.models import model_ref
    from grouprank.settings import RerankSettings
    from jobs.session import TINY_TABLE_CONF, get_session
    from jobs.stages.rerank import rerank_with_scores
    from schemas import CANDIDATES

    extra = dict(kv.split("=", 1) for kv in args.conf)
    spark = get_session("bench-plan-build", master="local[2]",
                        conf={**TINY_TABLE_CONF, "spark.ui.enabled": "false", **extra})
    spark.sparkContext.setLogLevel("ERROR")
    table = spark.createDataFrame(
        [(f"q{q}", f"query about topic {q}", f"d{i}", f"document {i} about topic {i % 3}",
          float(6 - i), i + 1) for q in range(4) for i in range(6)], CANDIDATES)
    settings = RerankSettings(partitions=2, precision="fp32", fusion_weight=0.5)
    ref, seconds = model_ref(settings.model), []
    for _ in range(args.builds):
        started = time.monotonic()
        result, _ = rerank_with_scores(table, settings, dt.date(2026, 11, 27), 2, ref=ref)
        result.columns  # noqa: B018 (the analysed plan's schema)
        seconds.append(time.monotonic() - started)
    kept = seconds[args.skip:]
    print(json.dumps({"conf": extra, "builds": len(kept),
                      "median_s": round(statistics.median(kept), 3),
                      "min_s": round(min(kept), 3)}))


if __name__ == "__main__":
    main()
