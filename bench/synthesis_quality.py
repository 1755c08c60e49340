"""Quality of the synthesis teachers on Vaswani, as the paper's Table 9 does on BRIGHT.

    .venv/bin/python bench/synthesis_quality.py --candidates out/bench/vaswani-bm25 \\
        --qrels ../shared/data/vaswani/qrels --teachers first-stage,encoder \\
        --out bench/results/synthesis_quality.json

For each query's pool (drawn exactly as the synthesis job draws it), NDCG@10 against the qrels of
each teacher's ranking alone and of the fused ranking for every (pointwise, listwise) pair of the
given teachers. The qrels are read here for measurement only; the synthesis job never reads them.
Also the job's throughput (pools per minute) with the default teachers.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path

from grouprank import formats
from grouprank import synthesis as syn
from grouprank.backends import GroupInput
from grouprank.metrics import parse_metric, query_value
from grouprank.teachers import FIRST_STAGE, load_teacher, parse_teacher
from jobs.stages import synthesize as synth_job
from jobs.session import get_session
from jobs.stages.synthesize import pool_sources
from jobs.tables import read_table

NDCG10 = parse_metric("ndcg@10")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", required=True)
    parser.add_argument("--qrels", required=True)
    parser.add_argument("--teachers", default="first-stage,encoder")
    parser.add_argument("--max-queries", type=int, default=0, help="0 = all")
    parser.add_argument("--out", default="bench/results/synthesis_quality.json")
    args = parser.parse_args()

    spark = get_session("bench-synthesis", master="local[2]")
    spark.sparkContext.setLogLevel("ERROR")
    settings = syn.SynthesisSettings()
    sources = pool_sources(read_table(spark, args.candidates), settings).toPandas()
    sources = sources.sort_values("qid", key=lambda s: s.astype(int, errors="ignore"))
    if args.max_queries:
        sources = sources.head(args.max_queries)
    qrels = formats.read_trec_qrels(args.qrels)
    judged = {q: dict(zip(g.docid, g.relevance)) for q, g in qrels.groupby("qid")}
    pools = []
    for row in sources.itertuples(index=False):
        keep = syn.sample_pool(len(row.docids), row.qid, settings)
        pools.append((row.qid, row.query, [row.docids[i] for i in keep],
                      [row.texts[i] for i in keep], [row.scores[i] for i in keep]))
    pools = [p for p in pools if p[0] in judged]

    ranks: dict[str, list[list[int]]] = {}
    seconds: dict[str, float] = {}
    for spec_text in args.teachers.split(","):
        spec = parse_teacher(spec_text)
        started = time.perf_counter()
        if spec.kind == FIRST_STAGE:
            scores = [p[4] for p in pools]
        else:
            teacher = load_teacher(spec)
            results = teacher.score_groups([GroupInput(p[1], tuple(p[3])) for p in pools])
            scores = [[-1.0 if s is None else s for s in r.scores] for r in results]
        seconds[spec.id] = round(time.perf_counter() - started, 1)
        ranks[spec.id] = [syn.ranks_from_scores(s, list(range(len(s)))) for s in scores]

    def mean_ndcg(rank_lists: list[list[int]]) -> float:
        values = []
        for (qid, _, docids, _, _), r in zip(pools, rank_lists):
            order = sorted(range(len(docids)), key=lambda i: r[i])
            rels = judged[qid]
            values.append(query_value(NDCG10, [rels.get(docids[i], 0) for i in order],
                                      list(rels.values())))
        return round(sum(values) / len(values), 4)

    results = {"pools": len(pools), "teacher_seconds": seconds, "alone": {}, "fused": {}}
    for name, r in ranks.items():
        results["alone"][name] = mean_ndcg(r)
    for p_name, l_name in itertools.permutations(ranks, 2):
        fused = [
            syn.ranks_from_scores(syn.fuse_ranks(p, l, settings.beta), p)
            for p, l in zip(ranks[p_name], ranks[l_name])
        ]
        results["fused"][f"{p_name} + {l_name}"] = mean_ndcg(fused)

    with tempfile.TemporaryDirectory() as work:
        job = synth_job.SynthesizeJob(candidates=args.candidates, output=str(Path(work) / "s"),
                                      run_date="2026-11-27", partitions=2)
        summary = synth_job.run(job, settings)
    results["job"] = {k: summary[k] for k in ("pools", "samples", "seconds", "pools_per_minute",
                                              "teachers")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
