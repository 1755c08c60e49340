"""Encode each distinct text once, and only what changed since the last night (issue 15).

    .venv/bin/python bench/incremental.py --queries 20 --shared-queries 64 --pool 400 \
        --out bench/results/incremental.json

On the default model (group encoder over MiniLM), local[2], in one Spark session:

1. Same night, two tables: Vaswani BM25 top-100 of the first ``--queries`` queries, and a table
   where every document is a candidate of about 16 queries (the first ``--shared-queries``
   SciFact test claims, each with its BM25 top-100 among the first ``--pool`` abstracts). Each is reranked twice through the
   rerank transforms and a Delta write: the scoring path before this change (every row's document
   encoded inside the scoring UDF: ``ModelRef`` without an encoder) and the new one (each distinct
   text embedded once in its own stage). Rows/s of both, their ratio, peak Python worker memory,
   and whether the rankings agree.
2. Night over night with ``--embedding-store``, through the real job (``jobs.stages.rerank.run``): night
   1 on the Vaswani table; night 2 with 10% of the queries given new candidates (BM25 ranks 101-200)
   and 5% of the document texts edited (drawn from the candidates of a fifth of the other queries,
   so the rest stay untouched). Texts encoded each night, job seconds (the session is
   already up, so no start-up cost is in them), and whether every query whose candidates and texts
   did not change got identical output.
3. The same two nights for an LLM backbone (the tests' tiny random Llama) with ``--score-cache``:
   groups sent to the model each night, and the same identity check.
4. ``synthesize-after-rerank``: the rerank job fills an embedding store from the Vaswani table,
   then the synthesize job runs on the same candidates without the store (the encoder teacher
   encodes its pools in memory) and with it (reads them): seconds and texts encoded of each, in
   turn, and whether the two sample tables agree (teacher ranks).
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import datetime as dt
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from grouprank import formats
from grouprank.models import model_ref
from grouprank.retrieval import Retriever, build_index
from grouprank.settings import RerankSettings
from jobs.stages import rerank as rerank_job
from jobs.session import get_session
from jobs.tables import write_run_date_partition
from jobs.stages.rerank import check_candidates, rerank_with_scores, scoring_diagnostics
from schemas import CANDIDATES

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DAY = dt.date(2026, 12, 1)


def vaswani_candidates(queries: int, depth: int = 200) -> pd.DataFrame:
    """BM25 top-``depth`` of the first ``queries`` Vaswani queries (columns of CANDIDATES)."""
    bench = formats.read_benchmark("trec", DATA / "vaswani")
    docs, topics = bench.corpus, bench.queries.head(queries)
    retriever = Retriever(build_index(list(docs.docid), list(docs.text), "bm25"))
    return _frame(retriever, topics, docs, depth)


def shared_candidates(queries: int, pool: int, depth: int = 100) -> pd.DataFrame:
    """The first ``queries`` SciFact claims, each with its BM25 top-``depth`` among the first
    ``pool`` abstracts: each abstract is a candidate of about queries · depth / pool queries."""
    corpus = formats.read_beir_corpus(DATA / "scifact" / "corpus.jsonl.gz").head(pool)
    texts = [f"{t} {x}" if t else x for t, x in zip(corpus.title.fillna(""), corpus.text)]
    docs = pd.DataFrame({"docid": corpus.docid, "text": texts})
    with gzip.open(DATA / "scifact" / "topics.beir-v1.0.0-scifact.test.tsv.gz", "rt") as f:
        rows = [line.rstrip("\n").split("\t", 1) for line in f][:queries]
    topics = pd.DataFrame(rows, columns=["qid", "query"])
    retriever = Retriever(build_index(list(docs.docid), list(docs.text), "bm25"))
    return _frame(retriever, topics, docs, depth)


def _frame(retriever, topics: pd.DataFrame, docs: pd.DataFrame, depth: int) -> pd.DataFrame:
    text = dict(zip(docs.docid, docs.text))
    qids, queries = list(topics.qid.astype(str)), list(topics["query"])
    rows = [(qids[i], queries[i], docid, text[docid], float(score), rank)
            for i, docid, score, rank in retriever.top_k(queries, depth)]
    return pd.DataFrame(rows, columns=CANDIDATES.fieldNames())


def same_night(spark, table: pd.DataFrame, name: str, work: Path) -> dict:
    settings = RerankSettings(partitions=2)
    checked, report = check_candidates(spark.createDataFrame(table, CANDIDATES), settings.on_duplicates)
    ref = model_ref("default")
    out = {}
    for label, path_ref in (("per_row_encoding", dataclasses.replace(ref, encoder=None)),
                            ("distinct_texts_once", ref)):
        target = str(work / f"{name}-{label}")
        started = time.perf_counter()
        result, scored = rerank_with_scores(checked, settings, DAY, ref=path_ref)
        scored = scored.persist()
        write_run_date_partition(result, target, DAY)
        seconds = time.perf_counter() - started
        diagnostics = scoring_diagnostics(scored)
        scored.unpersist()
        out[label] = {"seconds": round(seconds, 1), "rows_per_s": round(report.rows / seconds, 1),
                      "peak_worker_rss_mb": diagnostics["peak_worker_rss_mb"]}
    a, b = (spark.read.format("delta").load(str(work / f"{name}-{k}")).toPandas()
            .sort_values(["qid", "docid"]) for k in ("per_row_encoding", "distinct_texts_once"))
    distinct = table.text.nunique() + table["query"].nunique()
    return {
        "rows": report.rows, "queries": report.queries, "distinct_texts": int(distinct),
        "rows_per_distinct_doc": round(len(table) / table.text.nunique(), 1), **out,
        "speedup": round(out["per_row_encoding"]["seconds"] / out["distinct_texts_once"]["seconds"], 2),
        "same_ranks": bool((a["rank"].to_numpy() == b["rank"].to_numpy()).all()),
        "max_score_diff": float(np.abs(a.score.to_numpy() - b.score.to_numpy()).max()),
    }


def night_over_night(spark, deep: pd.DataFrame, work: Path, seed: int = 0,
                     llm: Path | None = None) -> dict:
    """Night 1, then night 2 with changes, through the embedding store (default model) or, with
    ``llm``, that LLM through the group score cache; counts what each night sent to the model."""
    rng = np.random.default_rng(seed)
    night1 = deep[deep["rank"] <= 100]
    qids = sorted(night1.qid.unique())
    moved = set(rng.choice(qids, max(1, round(0.10 * len(qids))), replace=False))
    # 5% of the documents are edited, drawn from the candidates of a fifth of the other queries
    # (edits cluster, as on real nights), so the remaining queries are untouched and their
    # outputs can be compared.
    docids = sorted(night1.docid.unique())
    touched = rng.choice(sorted(set(qids) - moved), max(1, round(0.2 * len(qids))), replace=False)
    pool = sorted(night1[night1.qid.isin(touched)].docid.unique())
    edited = set(rng.choice(pool, min(len(pool), max(1, round(0.05 * len(docids)))), replace=False))
    night2 = pd.concat([
        night1[~night1.qid.isin(moved)],
        deep[deep.qid.isin(moved) & (deep["rank"] > 100)].assign(rank=lambda d: d["rank"] - 100),
    ])
    night2 = night2.assign(text=[t + " (revised)" if d in edited else t
                                 for d, t in zip(night2.docid, night2.text)])
    store, figures = str(work / ("cache" if llm else "store")), {}
    settings = RerankSettings(partitions=2, **({"model": str(llm)} if llm else {}))
    stored = {"score_cache": store} if llm else {"embedding_store": store}
    # (summary section, work done, total, reused) of each night.
    section, done, total = ("score_cache", "scored", "groups") if llm else (
        "embeddings", "encoded", "texts")
    for night, table in (("night1", night1), ("night2", night2)):
        cand = str(work / f"{night}-candidates")
        spark.createDataFrame(table, CANDIDATES).write.format("delta").mode("overwrite").save(cand)
        summary = rerank_job.run(
            rerank_job.RerankJob(cand, str(work / f"{night}-reranked"), DAY.isoformat(),
                                 **stored),
            settings,
        )
        figures[night] = {"rows": summary["rows_out"], "seconds": summary["seconds"],
                          **{k: summary[section][k] for k in (total, done, "reused")}}
    unchanged = {q for q in qids if q not in moved
                 and not set(night1[night1.qid == q].docid) & edited}
    one, two = (_unchanged_rows(spark, str(work / f"{n}-reranked"), unchanged)
                for n in ("night1", "night2"))
    return {
        "queries": len(qids), "queries_with_new_candidates": len(moved),
        "documents_edited": len(edited), **figures,
        f"night2_{done}_share_of_night1": round(figures["night2"][done]
                                                / figures["night1"][done], 3),
        "unchanged_queries": len(unchanged),
        "unchanged_outputs_identical": bool(
            one[["qid", "docid", "rank", "score", "model_score"]].equals(
                two[["qid", "docid", "rank", "score", "model_score"]])),
    }


def synthesize_after_rerank(spark, deep: pd.DataFrame, work: Path) -> dict:
    """Synthesize with and without the store rerank has just filled (section 4)."""
    from grouprank.settings import SynthesisSettings
    from jobs.configs import SynthesizeJob
    from jobs.stages import synthesize as synth_job

    table, store = deep[deep["rank"] <= 100], str(work / "store")
    cand = str(work / "candidates")
    spark.createDataFrame(table, CANDIDATES).write.format("delta").mode("overwrite").save(cand)
    rerank_job.run(rerank_job.RerankJob(cand, str(work / "reranked"), DAY.isoformat(),
                                        embedding_store=store), RerankSettings(partitions=2))
    settings, figures = SynthesisSettings(), {}
    # Plain first: it pays the teacher's load in the Python workers, which then stay warm.
    for name, used in (("without_store", None), ("with_store", store)):
        job = SynthesizeJob(cand, str(work / f"samples-{name}"), DAY.isoformat(), partitions=2,
                            embedding_store=used)
        summary = synth_job.run(job, settings)
        figures[name] = {"seconds": summary["seconds"], "pools": summary["pools"],
                         "encoded": summary.get("embeddings", {}).get("encoded")}
    a, b = (spark.read.format("delta").load(str(work / f"samples-{n}")).toPandas()
            .sort_values("sample_id") for n in ("without_store", "with_store"))
    from scipy.stats import kendalltau

    pairs = list(zip(a.pointwise_ranks, b.pointwise_ranks))
    figures["precision"] = summary["embeddings"]["precision"]
    figures["samples_with_identical_teacher_ranks"] = (
        f"{sum(list(x) == list(y) for x, y in pairs)} of {len(pairs)}")
    figures["mean_kendall_tau_of_teacher_ranks"] = round(float(np.mean(
        [kendalltau(x, y).statistic for x, y in pairs])), 4)
    return {"rows": len(table), **figures}


def _tiny_llama(target: Path) -> Path:
    """The tests' tiny random Llama (tests/tiny_model.py): the LLM path at a size this CPU runs."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from tiny_model import build_tiny_llama

    return build_tiny_llama(target)


def _unchanged_rows(spark, path: str, qids: set[str]) -> pd.DataFrame:
    table = spark.read.format("delta").load(path).toPandas()
    table = table[table.qid.isin(qids)]
    return table.sort_values(["qid", "docid"]).reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=20, help="Vaswani queries")
    parser.add_argument("--shared-queries", type=int, default=64)
    parser.add_argument("--pool", type=int, default=400, help="abstracts the shared table draws on")
    parser.add_argument("--sections", default="same-night,night-over-night,llm-night-over-night",
                        help="llm-night-over-night: a tiny random Llama through --score-cache")
    parser.add_argument("--out", default="bench/results/incremental.json")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    spark = get_session("bench-incremental", master="local[2]")
    deep = vaswani_candidates(args.queries)
    command = (f"bench/incremental.py --queries {args.queries} --shared-queries "
               f"{args.shared_queries} --pool {args.pool} --sections {args.sections}")
    results = {f"command ({args.sections})": command}
    if Path(args.out).exists():  # keep the sections not rerun
        results = {**json.loads(Path(args.out).read_text()), **results}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "night-over-night" in sections:
            results["night_over_night"] = night_over_night(spark, deep, work / "encoder")
            _save(results, args.out)
        if "llm-night-over-night" in sections:
            llm = _tiny_llama(work / "tiny-llama")
            results["llm_night_over_night"] = night_over_night(spark, deep, work / "llm", llm=llm)
            _save(results, args.out)
        if "synthesize-after-rerank" in sections:
            results["synthesize_after_rerank"] = synthesize_after_rerank(
                spark, deep, work / "synthesize")
            _save(results, args.out)
        if "same-night" not in sections:
            spark.stop()
            return
        # Warm-up: both paths once on two queries, so neither measurement pays the Python
        # workers' start and model load.
        warm = deep[(deep["rank"] <= 100) & deep.qid.isin(sorted(deep.qid.unique())[:2])]
        same_night(spark, warm, "warm-up", work)
        results["same_night"] = {}
        results["same_night"]["vaswani_top100"] = same_night(
            spark, deep[deep["rank"] <= 100], "vaswani", work)
        _save(results, args.out)
        results["same_night"]["shared_documents"] = same_night(
            spark, shared_candidates(args.shared_queries, args.pool), "shared", work)
    _save(results, args.out)
    spark.stop()


def _save(results: dict, out: str) -> None:
    """Writes what is measured so far (a later section's failure keeps the earlier ones)."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2), flush=True)


if __name__ == "__main__":
    main()
