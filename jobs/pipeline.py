"""The nightly pipeline in one command, for schedulers other than Databricks Jobs.

    grouprank pipeline --config nightly.yaml [--run-date 2026-11-27]

Stages, in order: retrieve (optional) -> rerank -> evaluate (optional) -> publish (optional).
Each stage is one of the project's jobs, called with the same settings as its command line (keys
are the flag names with underscores), and each is idempotent per run date, so a failed night is
simply rerun (a publish of a night already published commits nothing). A summary of every
stage (status, seconds, counts, metrics) is printed and, with ``summary:``, stored in a Delta
table partitioned by run date (replaced on rerun). Example config:

    run_date: 2026-11-27          # or --run-date; "today" means the current UTC date
    summary: /data/grouprank/pipeline_runs
    retrieve: {corpus: /data/corpus, queries: /data/queries, output: /data/candidates}
    rerank: {output: /data/reranked, model: default, group_size: 20}   # candidates: retrieve.output
    evaluate: {qrels: /data/qrels, output: /data/metrics, name: nightly}  # run: rerank.output
    publish: {index: /data/serving, top_k: 10, gate: "nDCG@10>=0.40"}  # reranked: rerank.output
                                  # with a gate, metrics: evaluate.output, metrics_name: its name
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable

import yaml

from grouprank.settings import RerankSettings
from jobs import evaluate, publish, rerank, retrieve
from jobs.entry import run_job
from jobs.tables import check_table_ref, parse_run_date, write_run_date_partition

log = logging.getLogger("grouprank.pipeline")
_STAGES = ("retrieve", "rerank", "evaluate", "publish")


@dataclasses.dataclass(frozen=True)
class Stage:
    """One configured stage: its name and a call that runs it and returns its summary."""

    name: str
    call: Callable[[], dict]


def load_config(path: str, run_date: str | None = None) -> tuple[dt.date, list[Stage], str | None]:
    """Reads and checks a pipeline config; every problem is reported before any stage runs."""
    try:
        config = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"cannot read pipeline config {path}: {err}") from err
    unknown = set(config) - {"run_date", "summary", *_STAGES}
    if unknown:
        raise ValueError(f"pipeline config {path}: unknown keys {sorted(unknown)}")
    if "rerank" not in config:
        raise ValueError(f"pipeline config {path}: a 'rerank' section is required")
    date_text = str(run_date or config.get("run_date") or "")
    if date_text in ("", "today"):
        date_text = dt.datetime.now(dt.timezone.utc).date().isoformat()
    day = parse_run_date(date_text)
    summary = config.get("summary")
    if summary:
        check_table_ref(summary, "summary")
    stages: list[Stage] = []
    sections = {name: dict(config.get(name) or {}) for name in _STAGES if name in config}
    if "retrieve" in sections:
        job = _build(retrieve.RetrieveJob, sections["retrieve"], "retrieve")
        stages.append(Stage("retrieve", lambda job=job: retrieve.run(job)))
        sections["rerank"].setdefault("candidates", job.output)
    rerank_section = {**sections["rerank"], "run_date": day.isoformat()}
    settings_keys = {f.name for f in dataclasses.fields(RerankSettings)}
    settings = _build(RerankSettings, {k: v for k, v in rerank_section.items() if k in settings_keys}, "rerank")
    rerank_job = _build(
        rerank.RerankJob, {k: v for k, v in rerank_section.items() if k not in settings_keys}, "rerank"
    )
    stages.append(Stage("rerank", lambda: rerank.run(rerank_job, settings)))
    if "evaluate" in sections:
        section = {"run": rerank_job.output, **sections["evaluate"], "run_date": day.isoformat()}
        eval_job = _build(evaluate.EvaluateJob, section, "evaluate")
        stages.append(Stage("evaluate", lambda: evaluate.run(eval_job)))
    if "publish" in sections:
        section = {"reranked": rerank_job.output, **sections["publish"],
                   "run_date": day.isoformat()}
        if "evaluate" in sections and section.get("gate"):
            section.setdefault("metrics", eval_job.output)
            section.setdefault("metrics_name", eval_job.name)
        publish_job = _build(publish.PublishJob, section, "publish")
        stages.append(Stage("publish", lambda: publish.run(publish_job)))
    return day, stages, summary


def _build(cls: type, values: dict[str, Any], section: str):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"pipeline section '{section}': unknown keys {sorted(unknown)}")
    try:
        return cls(**values)
    except TypeError as err:
        raise ValueError(f"pipeline section '{section}': {err}") from err


def run(config_path: str, run_date: str | None = None) -> list[dict]:
    """Runs every configured stage in order; stops at the first failure, after recording it."""
    day, stages, summary_table = load_config(config_path, run_date)
    records: list[dict] = []
    failure: BaseException | None = None
    for stage in stages:
        started = time.time()
        try:
            result = stage.call()
            records.append(_record(day, stage.name, "ok", started, result))
        except Exception as err:  # recorded, then re-raised after the summary is stored
            records.append(_record(day, stage.name, "failed", started, {"error": str(err)}))
            failure = err
            break
    _print(records)
    if summary_table:
        _store(summary_table, day, records)
    if failure is not None:
        raise failure
    return records


def _record(day: dt.date, stage: str, status: str, started: float, details: dict) -> dict:
    return {
        "run_date": day,
        "stage": stage,
        "status": status,
        "seconds": round(time.time() - started, 1),
        "details": json.dumps(details, sort_keys=True, default=str),
    }


def _print(records: list[dict]) -> None:
    print(f"\npipeline {records[0]['run_date'] if records else ''}")
    for r in records:
        print(f"  {r['stage']:<9} {r['status']:<7} {r['seconds']:>8.1f} s")


def _store(table: str, day: dt.date, records: list[dict]) -> None:
    from jobs.session import get_session
    from schemas.pipeline import PIPELINE_RUNS

    spark = get_session("grouprank-pipeline")
    df = spark.createDataFrame([tuple(r[c] for c in PIPELINE_RUNS.fieldNames()) for r in records],
                               PIPELINE_RUNS)
    write_run_date_partition(df, table, day, "summary")


@dataclasses.dataclass(frozen=True)
class PipelineJob:
    """The pipeline's command line."""

    # Pipeline YAML file.
    config: str
    # Overrides the config's run_date (YYYY-MM-DD).
    run_date: str | None = None


def main(argv: list[str] | None = None) -> int:
    return run_job("pipeline", PipelineJob, lambda job: run(job.config, job.run_date), argv,
                   __doc__)


if __name__ == "__main__":
    sys.exit(main())
