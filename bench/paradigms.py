"""Speed and NDCG@10 of groupwise, pointwise and listwise reranking on one backbone and one input.

    .venv/bin/grouprank ingest --format trec --source ../shared/data/vaswani --output /tmp/vaswani
    .venv/bin/grouprank retrieve --corpus /tmp/vaswani/corpus --queries /tmp/vaswani/queries \\
        --output /tmp/vaswani/candidates_bm25 --method bm25 --top-k 100
    .venv/bin/python bench/paradigms.py --candidates /tmp/vaswani/candidates_bm25 \\
        --max-queries 20 --out results.json --qrels ../shared/data/vaswani/qrels [--model smollm2] \\
        [--limit groupwise/reason=3 ...] [--throughput-queries 5]

The candidates are read with Spark and grouped by the job's own ``build_groups`` (groupwise:
random groups of 20; listwise: one first-stage-ordered list per query); the scorers then run
in-process, without Spark, so only model time is measured (Spark's overhead is measured by the
job benchmarks). For each of ``groupwise/direct``, ``groupwise/reason``, ``pointwise/yesno``,
``pointwise/score`` and ``listwise``, with default settings otherwise:

- ``seconds_per_query``: mean wall time of ``score_groups`` on one query's groups at a time (the
  paper's latency; a query's groups or documents are batched together, its windows run in order).
  The paradigms take turns query by query, so a machine slowed by other work slows all alike;
- ``queries_per_second``: every query's groups in one ``score_groups`` call (throughput);
- ``calls_per_query`` (model calls: groups, documents or windows), ``prompt_tokens_per_query``,
  ``generated_tokens_per_query`` (tokens fed or generated after the prompt);
- ``ndcg@10`` of the model scores alone (ties and unusable scores fall back to first-stage
  order), from the latency pass; null without ``--qrels``.

``results.json`` is rewritten after every query (``queries_per_second`` stays null until the
throughput passes at the end), so an interrupted run keeps what finished; a
latency-against-NDCG@10 plot is written next to it (``.png``) when matplotlib is installed
(``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from grouprank.backends import GroupInput, GroupResult, GroupScorer
from grouprank.formats import read_trec_qrels
from grouprank.metrics import parse_metric, query_value
from grouprank.models import load_scorer
from grouprank.parsing import OK
from grouprank.permutation import sliding_windows
from grouprank.settings import RerankSettings

log = logging.getLogger("bench.paradigms")

PARADIGMS: dict[str, dict] = {
    "groupwise/direct": {"paradigm": "groupwise", "mode": "direct"},
    "pointwise/yesno": {"paradigm": "pointwise", "pointwise_scorer": "yesno"},
    "pointwise/score": {"paradigm": "pointwise", "pointwise_scorer": "score"},
    "listwise": {"paradigm": "listwise"},
    # Last: free generation of up to --max-new-tokens per group is by far the slowest.
    "groupwise/reason": {"paradigm": "groupwise", "mode": "reason"},
}
NDCG10 = parse_metric("ndcg@10")


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--candidates", required=True, help="candidates table (Delta/Parquet path or name)"
    )
    parser.add_argument("--max-queries", type=int, default=20, help="first N queries by qid")
    parser.add_argument(
        "--out", default="results.json", help="results JSON; the plot goes next to it"
    )
    parser.add_argument("--qrels", default=None, help="TREC qrels file, for NDCG@10")
    parser.add_argument(
        "--model", default="smollm2", help="causal LM directory, or the embedded SmolLM2"
    )
    parser.add_argument(
        "--limit", action="append", default=[], metavar="PARADIGM=N",
        help="measure PARADIGM (a results key, e.g. groupwise/reason) on only the first N "
        "queries; repeatable. For the slowest paradigms when CPU time is short",
    )
    parser.add_argument(
        "--throughput-queries", type=int, default=None,
        help="queries in each throughput pass (default: all measured queries)",
    )
    args = parser.parse_args()
    limits = {}
    for item in args.limit:
        key, _, n = item.partition("=")
        if key not in PARADIGMS or not n.isdigit() or int(n) < 1:
            parser.error(f"--limit {item!r}: expected PARADIGM=N with N >= 1 and PARADIGM one "
                         f"of {', '.join(PARADIGMS)}")
        limits[key] = int(n)
    if args.throughput_queries is not None and args.throughput_queries < 1:
        parser.error("--throughput-queries must be >= 1")

    groups, first_stage = read_groups(args.candidates, args.max_queries, args.model)
    qrels = read_trec_qrels(args.qrels) if args.qrels else None
    if qrels is not None:
        print(f"first stage nDCG@10 over {len(first_stage)} queries: "
              f"{mean_ndcg(first_stage, {}, qrels):.4f}")
    out = Path(args.out)
    results = run_interleaved(
        args.model, groups, first_stage, qrels, out,
        limits=limits, throughput_queries=args.throughput_queries,
    )
    plot(results, out.with_suffix(".png"))
    print_table(results)


def read_groups(
    candidates: str, max_queries: int, model: str
) -> tuple[dict[bool, dict[str, list[tuple[list[str], GroupInput]]]], dict[str, pd.DataFrame]]:
    """The job's groups for the first ``max_queries`` queries, keyed by listwise-or-not, then qid.

    Also returns each query's first-stage ranking (docid, first_stage_rank) for the NDCG fallback.
    """
    from pyspark.sql import functions as F

    from jobs.session import get_session
    from jobs.tables import read_table
    from jobs.stages.rerank import build_groups, check_candidates, prepare_candidates

    spark = get_session("grouprank-bench-paradigms")
    checked, _ = check_candidates(read_table(spark, candidates, "--candidates"))
    qids = sorted({r["qid"] for r in checked.select("qid").distinct().collect()}, key=_qid_order)
    chosen = qids[:max_queries]
    prepared = prepare_candidates(checked.where(F.col("qid").isin(chosen)))
    scoreable = prepared.where(F.col("skip").isNull())
    ranks = scoreable.select("qid", "docid", "first_stage_rank").toPandas()
    first_stage = {
        qid: part.sort_values("first_stage_rank") for qid, part in ranks.groupby("qid")
    }
    grouped: dict[bool, dict[str, list]] = {}
    for listwise in (False, True):
        settings = RerankSettings(model=model, paradigm="listwise" if listwise else "groupwise")
        rows = build_groups(scoreable, settings).toPandas().sort_values(["qid", "group"])
        grouped[listwise] = {
            qid: [
                (list(r.docids), GroupInput(str(r.query), tuple(str(t) for t in r.texts)))
                for r in part.itertuples()
            ]
            for qid, part in rows.groupby("qid")
        }
    spark.stop()
    return grouped, first_stage


@dataclass
class _Tally:
    """One paradigm's running totals over the queries measured so far."""

    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    calls: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    ok: int = 0
    documents: int = 0
    scores: dict[str, dict[str, float | None]] = field(default_factory=dict)
    queries_per_second: float | None = None
    throughput_queries: int | None = None
    # Listwise repair counts after the latency pass (the throughput pass would count twice).
    repairs: dict[str, int] = field(default_factory=dict)


def run_interleaved(
    model: str,
    groups: dict[bool, dict[str, list[tuple[list[str], GroupInput]]]],
    first_stage: dict[str, pd.DataFrame],
    qrels: pd.DataFrame | None,
    out: Path,
    limits: dict[str, int] | None = None,
    throughput_queries: int | None = None,
) -> dict[str, dict]:
    """Latency of every paradigm query by query, then each paradigm's throughput pass.

    The paradigms take turns on each query, so a slow-down of the machine (other jobs on shared
    cores) hits all of them alike, and a run stopped early still compares them on the same
    queries. ``limits`` caps the latency queries of a paradigm (its first N, a subset of the
    others'); the throughput pass scores the first ``throughput_queries`` queries (or a
    paradigm's own fewer). ``out`` is rewritten after every query and after every throughput pass.
    """
    limits = limits or {}
    settings = {key: RerankSettings(model=model, **o) for key, o in PARADIGMS.items()}
    scorers = {key: load_scorer(s) for key, s in settings.items()}
    for scorer in scorers.values():
        scorer.score_groups([GroupInput("warm up", ("a short document", "another one"))])
        if hasattr(scorer, "repairs"):
            scorer.repairs.clear()
    tallies = {key: _Tally() for key in PARADIGMS}
    results: dict[str, dict] = {}
    qids = list(groups[False])
    for number, qid in enumerate(qids, 1):
        for key, scorer in scorers.items():
            if number > limits.get(key, len(qids)):
                continue
            members = groups[settings[key].paradigm == "listwise"][qid]
            _measure_query(settings[key], scorer, qid, members, tallies[key])
        results = _summarise(tallies, first_stage, qrels)
        out.write_text(json.dumps(results, indent=2) + "\n")
        log.info("query %d/%d done: %s", number, len(qids), {
            k: v["seconds_per_query"] for k, v in results.items()})
    for key, scorer in scorers.items():
        chosen = qids[: min(throughput_queries or len(qids), limits.get(key, len(qids)))]
        by_qid = groups[settings[key].paradigm == "listwise"]
        everything = [g for qid in chosen for _, g in by_qid[qid]]
        started = time.perf_counter()
        scorer.score_groups(everything)
        tallies[key].queries_per_second = len(chosen) / (time.perf_counter() - started)
        tallies[key].throughput_queries = len(chosen)
        results = _summarise(tallies, first_stage, qrels)
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"{key}: " + json.dumps(results[key]))
    return results


def _measure_query(
    settings: RerankSettings,
    scorer: GroupScorer,
    qid: str,
    members: list[tuple[list[str], GroupInput]],
    tally: _Tally,
) -> None:
    inputs = [g for _, g in members]
    started, cpu_started = time.perf_counter(), time.process_time()
    results = scorer.score_groups(inputs)
    tally.seconds.append(time.perf_counter() - started)
    tally.cpu_seconds.append(time.process_time() - cpu_started)
    tally.scores[qid] = _document_scores(members, results)
    tally.prompt_tokens += sum(r.prompt_tokens for r in results)
    tally.generated_tokens += sum(r.generated_tokens for r in results)
    tally.calls += sum(_calls(settings, g) for g in inputs)
    tally.ok += sum(s == OK for r in results for s in r.statuses)
    tally.documents += sum(len(r.statuses) for r in results)
    tally.repairs = dict(getattr(scorer, "repairs", {}))


def _summarise(
    tallies: dict[str, _Tally],
    first_stage: dict[str, pd.DataFrame],
    qrels: pd.DataFrame | None,
) -> dict[str, dict]:
    results = {}
    for key, t in tallies.items():
        n = len(t.seconds)
        measured = {qid: first_stage[qid] for qid in t.scores}
        results[key] = {
            "seconds_per_query": round(sum(t.seconds) / n, 3),
            "queries_per_second": None if t.queries_per_second is None
            else round(t.queries_per_second, 4),
            "calls_per_query": round(t.calls / n, 2),
            "prompt_tokens_per_query": round(t.prompt_tokens / n, 1),
            "generated_tokens_per_query": round(t.generated_tokens / n, 1),
            "ndcg@10": None if qrels is None else round(mean_ndcg(measured, t.scores, qrels), 4),
            "queries": n,
            "throughput_queries": t.throughput_queries,
            # CPU time of this process (all torch threads): less sensitive than wall time to
            # other work on shared cores, though threads that spin while waiting still count.
            "cpu_seconds_per_query": round(sum(t.cpu_seconds) / n, 3),
            "ok_fraction": round(t.ok / t.documents, 4) if t.documents else None,
            "torch_threads": torch.get_num_threads(),
        }
        if t.repairs:
            results[key]["listwise_repairs"] = t.repairs
    return results


def _calls(settings: RerankSettings, group: GroupInput) -> int:
    """Model calls one group costs: one per group, per document, or per window."""
    if settings.paradigm == "pointwise":
        return len(group.texts)
    if settings.paradigm == "listwise":
        return len(sliding_windows(len(group.texts), settings.window_size, settings.window_step))
    return 1


def _document_scores(
    members: list[tuple[list[str], GroupInput]], results: list[GroupResult]
) -> dict[str, float | None]:
    return {
        docid: score
        for (docids, _), result in zip(members, results)
        for docid, score in zip(docids, result.scores)
    }


def mean_ndcg(
    first_stage: dict[str, pd.DataFrame],
    scores: dict[str, dict[str, float | None]],
    qrels: pd.DataFrame,
) -> float:
    """Mean NDCG@10 of the model scores, ties and missing scores ordered by first-stage rank.

    With no scores for a query this is the first-stage ranking's NDCG@10.
    """
    judged = {qid: dict(zip(part.docid, part.relevance)) for qid, part in qrels.groupby("qid")}
    values = []
    for qid, ranking in first_stage.items():
        model = scores.get(qid, {})
        order = sorted(
            zip(ranking.docid, ranking.first_stage_rank),
            key=lambda d: (-_or_minus_inf(model.get(d[0])), d[1]),
        )
        labels = judged.get(qid, {})
        ranked = [labels.get(docid, 0) for docid, _ in order]
        values.append(query_value(NDCG10, ranked, list(labels.values())))
    return sum(values) / len(values)


def _or_minus_inf(score: float | None) -> float:
    return -math.inf if score is None else score


def plot(results: dict[str, dict], path: Path) -> None:
    """Seconds per query (log scale) against NDCG@10, one labelled point per paradigm."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed (pip install -e '.[bench]'): no plot written")
        return
    points = {k: v for k, v in results.items() if v["ndcg@10"] is not None}
    if not points:
        log.warning("no NDCG@10 without --qrels: no plot written")
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, value in points.items():
        ax.scatter(value["seconds_per_query"], value["ndcg@10"])
        ax.annotate(key, (value["seconds_per_query"], value["ndcg@10"]),
                    textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("seconds per query (one query at a time, log scale)")
    ax.set_ylabel("nDCG@10")
    ax.set_title("Latency against quality, same backbone and candidates")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot written to {path}")


def print_table(results: dict[str, dict]) -> None:
    """The results as a Markdown table for docs/BENCHMARKS.md."""
    print("\n| paradigm | s/query | queries/s | calls/query | prompt tok/query | "
          "generated tok/query | nDCG@10 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for key, v in results.items():
        ndcg = "n/a" if v["ndcg@10"] is None else f"{v['ndcg@10']:.4f}"
        print(f"| {key} | {v['seconds_per_query']} | {v['queries_per_second']} | "
              f"{v['calls_per_query']} | {v['prompt_tokens_per_query']} | "
              f"{v['generated_tokens_per_query']} | {ndcg} |")


def _qid_order(qid: str) -> tuple:
    return (0, int(qid), "") if qid.isdigit() else (1, 0, qid)


if __name__ == "__main__":
    main()
