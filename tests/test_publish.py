"""The publish job on real Delta tables: two nights in turn, a rerun that commits nothing, each
gate blocking, rollback, full and partial scope, a MERGE that dies before its commit, bad flags.

Expected rows are written out by hand from the nights below, never derived from the job's code.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from pyspark.sql import functions as F

from jobs import cli
from jobs.configs import PublishJob
from jobs.stages import run as run_stage
from jobs.stages.publish import FAULT_MERGE_FAILS, GateFailed, check, run
from schemas.metrics import METRICS
from schemas.serving import SERVING

NIGHT1, NIGHT2 = "2026-11-30", "2026-12-01"
UNSCORED, INCOMPLETE, CHURNED, NIGHT5 = "2026-12-02", "2026-12-03", "2026-12-04", "2026-12-05"
QUERIES = [f"q{i}" for i in range(6)]
# (qid, docid, rank, score, model_score, status, model_digest)
_COLUMNS = ("qid string, docid string, rank int, score double, model_score double, "
            "status string, model string, settings_digest string, run_date date")


def _ranking(qid: str, docs: list[str], scores: list[float] | None = None,
             model_scores: list[float | None] | None = None, status: str = "ok"):
    scores = [float(s) for s in scores or [10 - i for i in range(len(docs))]]
    model_scores = [None if m is None else float(m)
                    for m in model_scores or [9 - i for i in range(len(docs))]]
    return [(qid, f"{qid}-{d}", i + 1, scores[i], model_scores[i],
             status if model_scores[i] is None else "ok")
            for i, d in enumerate(docs)]


BASE = ["d0", "d1", "d2", "d3", "d4"]


def _night(changes: dict[str, list[tuple]] | None = None) -> list[tuple]:
    changes = changes or {}
    rows = []
    for q in QUERIES:
        rows += changes.get(q, _ranking(q, BASE))
    return rows


NIGHTS = {
    NIGHT1: _night(),
    # q1: ranks 2 and 3 swap their documents (same set); q2: a new document on top (new set);
    # q3: only the first score moves. q0, q4, q5 as the night before.
    NIGHT2: _night({
        "q1": _ranking("q1", ["d0", "d2", "d1", "d3", "d4"]),
        "q2": _ranking("q2", ["new", "d0", "d1", "d2", "d3"]),
        "q3": _ranking("q3", BASE, scores=[10.5, 9, 8, 7, 6]),
    }),
    # Half the queries unscored by the model.
    UNSCORED: _night({q: _ranking(q, BASE, model_scores=[None] * 5, status="unparsed")
                      for q in QUERIES[:3]}),
    # Every query gets five new documents.
    CHURNED: _night({q: _ranking(q, [f"x{i}" for i in range(5)]) for q in QUERIES}),
    # Night 2 with one score of q4 moved: passes the label-free gates.
    NIGHT5: _night({
        "q1": _ranking("q1", ["d0", "d2", "d1", "d3", "d4"]),
        "q2": _ranking("q2", ["new", "d0", "d1", "d2", "d3"]),
        "q3": _ranking("q3", BASE, scores=[10.5, 9, 8, 7, 6]),
        "q4": _ranking("q4", BASE, scores=[10, 9, 7.5, 7, 6]),
    }),
}
# q0 has rank 2 twice and no rank 3.
NIGHTS[INCOMPLETE] = [r if not (r[0] == "q0" and r[2] == 3) else (r[0], r[1], 2, *r[3:])
                      for r in NIGHTS[NIGHT1]]


def _frame(spark, nights: dict[str, list[tuple]], digest: str | None):
    rows = [(*r, "tiny", "s1", dt.date.fromisoformat(day))
            for day, night in nights.items() for r in night]
    df = spark.createDataFrame(rows, _COLUMNS)
    return df.withColumn("model_digest", F.lit(digest)) if digest else df


@pytest.fixture(scope="module")
def tables(spark, tmp_path_factory):
    base = tmp_path_factory.mktemp("publish")
    reranked = str(base / "reranked")
    _frame(spark, NIGHTS, "sha256:abc").write.format("delta").partitionBy("run_date") \
        .save(reranked)
    metrics = str(base / "metrics")
    spark.createDataFrame(
        [(dt.date.fromisoformat(day), "nightly", "all", "nDCG@10", value, 6)
         for day, value in ((NIGHT2, 0.50), (NIGHT5, 0.45))], METRICS,
    ).write.format("delta").save(metrics)
    return base, reranked, metrics


def _job(tables, index: str, day: str, **kwargs) -> PublishJob:
    base, reranked, _ = tables
    return PublishJob(index=str(base / index), reranked=reranked, run_date=day, top_k=3,
                      **kwargs)


def _rows(spark, path: str, version: int | None = None) -> set[tuple]:
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return {(r["qid"], r["rank"], r["docid"], r["score"], r["model_score"])
            for r in reader.load(path).collect()}


def _feed(spark, path: str, version: int) -> set[tuple]:
    feed = (spark.read.format("delta").option("readChangeFeed", "true")
            .option("startingVersion", version).option("endingVersion", version).load(path))
    return {(r["qid"], r["rank"], r["docid"], r["_change_type"]) for r in feed.collect()}


def _versions(spark, path: str) -> list[int]:
    return sorted(r[0] for r in spark.sql(f"DESCRIBE HISTORY delta.`{path}`")
                  .select("version").collect())


def _top3(night: list[tuple], queries=QUERIES) -> set[tuple]:
    return {(q, rank, doc, score, model) for q, doc, rank, score, model, _ in night
            if rank <= 3 and q in queries}


@pytest.fixture(scope="module")
def published(spark, tables):
    """The shared index: night 1, then night 2 (with --export-changes)."""
    base = tables[0]
    first = run(_job(tables, "serving", NIGHT1))
    second = run(_job(tables, "serving", NIGHT2, export_changes=str(base / "changes.jsonl")))
    return str(base / "serving"), first, second


def test_two_nights_feed_holds_exactly_the_changed_rows(spark, tables, published):
    index, first, second = published
    assert (first["outcome"], first["version_before"], first["version_after"]) == \
        ("published", 0, 1)
    assert first["changes"] == {"insert": 18, "update": 0, "delete": 0}
    assert _feed(spark, index, 1) == {(q, r, d, "insert") for q, r, d, *_ in _top3(NIGHTS[NIGHT1])}
    assert _rows(spark, index) == _top3(NIGHTS[NIGHT2])
    # Night 2: q1's ranks 2-3 swap, q2 gains 'new' on top, q3's first score moves.
    assert second["changes"] == {"insert": 0, "update": 6, "delete": 0}
    post = {(q, r, d) for q, r, d, kind in _feed(spark, index, 2) if kind == "update_postimage"}
    assert post == {("q1", 2, "q1-d2"), ("q1", 3, "q1-d1"), ("q2", 1, "q2-new"),
                    ("q2", 2, "q2-d0"), ("q2", 3, "q2-d1"), ("q3", 1, "q3-d0")}
    assert {kind for *_, kind in _feed(spark, index, 2)} == {"update_preimage",
                                                            "update_postimage"}
    churn = next(g for g in second["gates"] if g["gate"] == "churn")
    assert churn["value"] == pytest.approx(1 / 6)  # only q2's set changed
    exported = [json.loads(line) for line in (tables[0] / "changes.jsonl").read_text()
                .splitlines()]
    assert exported[0] == {"qid": "q1", "rank": 2, "docid": "q1-d2", "score": 9.0,
                           "change": "update"}
    assert len(exported) == 6 and {e["change"] for e in exported} == {"update"}
    served = spark.read.format("delta").load(index)
    assert served.schema.fieldNames() == SERVING.fieldNames()
    assert {r[0] for r in served.select("model_digest").distinct().collect()} == {"sha256:abc"}
    # Unchanged rows keep the night that last changed them.
    dates = {(r["qid"], r["rank"]): str(r["run_date"]) for r in served.collect()}
    assert dates[("q0", 1)] == NIGHT1 and dates[("q3", 1)] == NIGHT2


def test_republishing_a_night_commits_nothing(spark, tables, published):
    index = published[0]
    before = _versions(spark, index)
    summary = run(_job(tables, "serving", NIGHT2))
    assert summary["outcome"] == "unchanged"
    assert summary["changes"] == {"insert": 0, "update": 0, "delete": 0}
    assert _versions(spark, index) == before == [0, 1, 2]
    feed = (spark.read.format("delta").option("readChangeFeed", "true")
            .option("startingVersion", 0).load(index))
    assert feed.where("_commit_version > 2").count() == 0
    log = spark.read.format("delta").load(index + "_publish_log").orderBy("attempted_at")
    last = log.collect()[-1]
    assert (last["outcome"], last["version_before"], last["version_after"]) == ("unchanged", 2, 2)


@pytest.mark.parametrize(("day", "extra", "gate"), [
    (INCOMPLETE, {}, "gate complete failed: 1 of 6 queries"),
    (UNSCORED, {}, "gate unscored failed: 15 of 30 documents"),
    (CHURNED, {}, "gate churn failed: 6 of 6 published queries"),
    (NIGHT5, {"gate": "nDCG@10>=0.48"}, "gate nDCG@10>=0.48 failed: nDCG@10 0.4500 < 0.48"),
    (NIGHT5, {"gate": "nDCG@10>=0.40", "max_drop": 0.02},
     "gate drop:nDCG@10 failed: nDCG@10 fell 0.0500 from 0.5000"),
])
def test_each_gate_blocks_and_leaves_the_index_untouched(spark, tables, published, day, extra,
                                                         gate):
    index = published[0]
    rows, versions = _rows(spark, index), _versions(spark, index)
    if "gate" in extra:
        extra = {**extra, "metrics": tables[2]}
    with pytest.raises(GateFailed, match=gate):
        run(_job(tables, "serving", day, **extra))
    assert _rows(spark, index) == rows and _versions(spark, index) == versions
    last = spark.read.format("delta").load(index + "_publish_log") \
        .orderBy(F.col("attempted_at").desc()).first()
    assert last["outcome"] == "blocked" and last["message"].startswith(gate.split(":")[0])
    assert last["run_date"] == dt.date.fromisoformat(day)
    assert [g["passed"] for g in last["gates"]].count(False) == 1


def test_metric_gates_pass_on_a_good_night(spark, tables, published, capsys):
    summary = run_stage("publish", _job(tables, "serving", NIGHT5, metrics=tables[2],
                                       gate="nDCG@10>=0.40", max_drop=0.1, dry_run=True))
    assert summary["outcome"] == "dry_run"
    assert [(g["gate"], g["passed"]) for g in summary["gates"]] == [
        ("complete", True), ("unscored", True), ("churn", True), ("nDCG@10>=0.4", True),
        ("drop:nDCG@10", True)]
    assert summary["changes"] == {"insert": 0, "update": 1, "delete": 0}
    out = capsys.readouterr().out
    assert "update q4 rank 3: q4-d2 (7.5000)" in out and "changes (first 1)" in out
    assert _versions(spark, published[0]) == [0, 1, 2]  # a dry run writes nothing


def test_rollback_restores_the_previous_version_exactly(spark, tables):
    base = tables[0]
    index = str(base / "rollback")
    run(_job(tables, "rollback", NIGHT1))
    run(_job(tables, "rollback", NIGHT2))
    summary = run(PublishJob(index=index, rollback=True))
    assert (summary["restored_version"], summary["version_after"]) == (1, 3)
    assert _rows(spark, index) == _rows(spark, index, version=1) == _top3(NIGHTS[NIGHT1])
    # The feed of the restore holds the reverse of night 2's changes, and nothing else.
    feed = _feed(spark, index, 3)
    assert {(q, r, d) for q, r, d, kind in feed if kind == "insert"} == {
        ("q1", 2, "q1-d1"), ("q1", 3, "q1-d2"), ("q2", 1, "q2-d0"), ("q2", 2, "q2-d1"),
        ("q2", 3, "q2-d2"), ("q3", 1, "q3-d0")}
    assert {(q, r) for q, r, d, kind in feed if kind == "delete"} == {
        ("q1", 2), ("q1", 3), ("q2", 1), ("q2", 2), ("q2", 3), ("q3", 1)}
    assert summary["changes"] == {"insert": 0, "update": 6, "delete": 0}
    log = spark.read.format("delta").load(index + "_publish_log").orderBy("attempted_at")
    assert [(r["action"], r["outcome"]) for r in log.collect()] == [
        ("publish", "published"), ("publish", "published"), ("rollback", "restored")]
    with pytest.raises(ValueError, match="since its last rollback"):
        run(PublishJob(index=index, rollback=True))
    run(PublishJob(index=index, rollback=True, to_version=0))
    assert _rows(spark, index) == set()


def test_full_scope_deletes_vanished_queries_and_partial_keeps_them(spark, tables, tmp_path):
    base, _, _ = tables
    reranked = str(tmp_path / "subset")
    # No model_digest column here: the index stores null. q0 keeps only two documents above
    # --min-score 6.5 in the second night; q4 and q5 are absent from it.
    two = _ranking("q0", BASE, model_scores=[9, 8, 5, 4, 3])
    nights = {NIGHT1: NIGHTS[NIGHT1],
              NIGHT2: [r for r in NIGHTS[NIGHT1] if r[0] in ("q1", "q2", "q3")] + two}
    _frame(spark, nights, None).write.format("delta").save(reranked)
    for scope in ("partial", "full"):
        index = str(base / f"scope-{scope}")
        job = dict(index=index, reranked=reranked, top_k=3, min_score=6.5, scope=scope,
                   max_churn=1.0)
        run(PublishJob(run_date=NIGHT1, **job))
        summary = run(PublishJob(run_date=NIGHT2, **job))
        kept = _top3(NIGHTS[NIGHT1], ["q1", "q2", "q3"]) | {
            ("q0", 1, "q0-d0", 10.0, 9.0), ("q0", 2, "q0-d1", 9.0, 8.0)}
        if scope == "partial":
            kept |= _top3(NIGHTS[NIGHT1], ["q4", "q5"])
        assert _rows(spark, index) == kept, scope
        assert summary["changes"]["delete"] == (1 if scope == "partial" else 7)
        deleted = {(q, r) for q, r, d, kind in _feed(spark, index, 2) if kind == "delete"}
        assert ("q0", 3) in deleted and len(deleted) == summary["changes"]["delete"]
        assert spark.read.format("delta").load(index).where("model_digest IS NOT NULL") \
            .count() == 0


def test_a_merge_that_dies_before_its_commit_leaves_the_index_as_it_was(spark, tables,
                                                                      monkeypatch):
    index = str(tables[0] / "fault")
    run(_job(tables, "fault", NIGHT1))
    rows, versions = _rows(spark, index), _versions(spark, index)
    monkeypatch.setenv("GROUPRANK_TEST_FAULT", FAULT_MERGE_FAILS)
    with pytest.raises(Exception, match="injected fault"):
        run(_job(tables, "fault", NIGHT2))
    assert _rows(spark, index) == rows and _versions(spark, index) == versions
    last = spark.read.format("delta").load(index + "_publish_log") \
        .orderBy(F.col("attempted_at").desc()).first()
    assert last["outcome"] == "failed" and "injected fault" in last["message"]
    monkeypatch.delenv("GROUPRANK_TEST_FAULT")
    assert run(_job(tables, "fault", NIGHT2))["outcome"] == "published"
    assert _rows(spark, index) == _top3(NIGHTS[NIGHT2])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"top_k": 0}, "--top-k must be >= 1, got 0"),
    ({"gate": "nDCG@10>=abc", "metrics": "/m"}, "'abc' is not a number"),
    ({"gate": "nDCG@10 > 0.4", "metrics": "/m"}, "is not METRIC>=VALUE"),
    ({"gate": "ndgc@10>=0.4", "metrics": "/m"}, "unknown metric 'ndgc'"),
    ({"gate": "nDCG@10>=0.4"}, "give --metrics"),
    ({"run_date": "01/12/2026"}, "--run-date '01/12/2026' is not a date"),
    ({"max_churn": 1.5}, "--max-churn must be between 0 and 1"),
    ({"to_version": 1}, "--to-version needs --rollback"),
    ({"rollback": True}, "--rollback takes only --index"),
])
def test_bad_flags_fail_before_any_work(kwargs, message):
    base = dict(index="/tmp/never/serving", reranked="/tmp/never/reranked", run_date=NIGHT1)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check(PublishJob(**{**base, **kwargs}))


def test_cli_exit_codes_and_an_unknown_run_date(spark, tables, published, capsys):
    base, reranked, _ = tables
    index = published[0]
    common = ["publish", "--reranked", reranked, "--index", index, "--top-k", "3"]
    assert cli.main([*common, "--run-date", "2026-12-09"]) == 2
    err = capsys.readouterr().err
    assert "--run-date 2026-12-09" in err and f"latest run dates: {NIGHT5}" in err
    assert cli.main([*common, "--run-date", NIGHT1, "--top-k", "0"]) == 2
    assert "--top-k must be >= 1" in capsys.readouterr().err
    assert cli.main([*common, "--run-date", CHURNED]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("grouprank publish: error: gate churn failed: 6 of 6")
    assert cli.main([*common, "--run-date", NIGHT2]) == 0


def test_pipeline_config_builds_a_publish_stage_after_evaluate(tmp_path):
    from jobs.stages import pipeline

    path = tmp_path / "nightly.yaml"
    path.write_text(
        "run_date: 2026-12-01\n"
        "rerank: {candidates: /data/candidates, output: /data/reranked}\n"
        "evaluate: {qrels: /data/qrels, output: /data/metrics, name: nightly}\n"
        'publish: {index: /data/serving, gate: "nDCG@10>=0.4", max_drop: 0.02}\n'
    )
    _, stages, _ = pipeline.load_config(str(path))
    assert [s.name for s in stages] == ["rerank", "evaluate", "publish"]
    path.write_text(path.read_text().replace("max_drop: 0.02", "top_k: 0"))
    with pytest.raises(ValueError, match="--top-k must be >= 1"):
        pipeline.load_config(str(path))
    path.write_text(path.read_text().replace("top_k: 0", "gates: 1"))
    with pytest.raises(ValueError, match=r"unknown keys \['gates'\]"):
        pipeline.load_config(str(path))
    # Without a gate, publish reads no metrics: evaluate's table is not wired into it.
    path.write_text(path.read_text().replace('gate: "nDCG@10>=0.4", gates: 1', "top_k: 5"))
    _, stages, _ = pipeline.load_config(str(path))
    assert stages[-1].configs[0].metrics is None
