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
import time
from pathlib import Path
from typing import Any

import yaml

from jobs.configs import PipelineJob
from jobs.stages import check as check_stage
from jobs.stages import config_classes, configs_from
from jobs.stages import run as run_stage
from jobs.tables import check_table_ref, parse_run_date, write_run_date_partition

log = logging.getLogger("grouprank.pipeline")
# The registry's stages a pipeline config may hold, in the order they run.
PIPELINE_STAGES = ("retrieve", "rerank", "evaluate", "publish")
# A stage's flag -> (earlier stage, its flag) it defaults to: the night's tables flow on.
_WIRING: dict[str, dict[str, tuple[str, str]]] = {
    "rerank": {"candidates": ("retrieve", "output")},
    "evaluate": {"run": ("rerank", "output")},
    "publish": {"reranked": ("rerank", "output"), "metrics": ("evaluate", "output"),
                "metrics_name": ("evaluate", "name")},
}
# Publish reads the metrics table only for its metric gates: wired only into a gated section.
_GATE_INPUTS = {"metrics", "metrics_name"}


@dataclasses.dataclass(frozen=True)
class Step:
    """One configured stage: its registry name and its config objects, checked."""

    name: str
    configs: tuple[Any, ...]


def load_config(path: str, run_date: str | None = None) -> tuple[dt.date, list[Step], str | None]:
    """Reads and checks a pipeline config; every problem is reported before any stage runs.

    Each section is a stage of the registry (``jobs.stages``), its keys that stage's flags; a
    section's missing inputs are the previous stage's outputs.
    """
    try:
        config = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"cannot read pipeline config {path}: {err}") from err
    unknown = set(config) - {"run_date", "summary", *PIPELINE_STAGES}
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
    sections = {name: dict(config.get(name) or {}) for name in PIPELINE_STAGES if name in config}
    outputs: dict[str, dict[str, Any]] = {}
    steps: list[Step] = []
    for name in PIPELINE_STAGES:
        if name not in sections:
            continue
        values = {**_inputs(name, outputs, sections[name]), **sections[name]}
        if "run_date" in _fields(name):
            values["run_date"] = day.isoformat()
        configs = configs_from(name, values, f"pipeline section '{name}'")
        check_stage(name, *configs)
        outputs[name] = {k: v for c in configs for k, v in dataclasses.asdict(c).items()}
        steps.append(Step(name, configs))
    return day, steps, summary


def _fields(name: str) -> set[str]:
    return {f.name for cls in config_classes(name) for f in dataclasses.fields(cls)}


def _inputs(name: str, outputs: dict[str, dict[str, Any]], section: dict[str, Any]
            ) -> dict[str, Any]:
    """A stage's defaults taken from the stages before it (``_WIRING``)."""
    values = {}
    for key, (source, source_key) in _WIRING.get(name, {}).items():
        if key in _GATE_INPUTS and not section.get("gate"):
            continue
        if source in outputs and outputs[source].get(source_key) is not None:
            values[key] = outputs[source][source_key]
    return values


def check(job: PipelineJob) -> None:
    """Reads and checks the whole config (every section) before any stage runs."""
    load_config(job.config, job.run_date)


def run(job: PipelineJob) -> dict:
    """Runs the configured stages; returns the pipeline summary (one record per stage)."""
    records = run_config(job.config, job.run_date)
    return {"job": "pipeline", "config": job.config,
            "run_date": records[0]["run_date"] if records else None,
            "stages": [{k: r[k] for k in ("stage", "status", "seconds")} for r in records]}


def headline(summary: dict) -> str:
    """One line per stage: status and seconds (each stage printed its own summary above)."""
    lines = [f"pipeline {summary['run_date'] or ''}"]
    lines += [f"  {r['stage']:<9} {r['status']:<7} {r['seconds']:>8.1f} s"
              for r in summary["stages"]]
    return "\n".join(lines)


def run_config(config_path: str, run_date: str | None = None) -> list[dict]:
    """Runs every configured stage in order; stops at the first failure, after recording it."""
    day, stages, summary_table = load_config(config_path, run_date)
    records: list[dict] = []
    failure: BaseException | None = None
    for step in stages:
        started = time.time()
        try:
            result = run_stage(step.name, *step.configs)
            records.append(_record(day, step.name, "ok", started, result))
        except Exception as err:  # recorded, then re-raised after the summary is stored
            records.append(_record(day, step.name, "failed", started, {"error": str(err)}))
            failure = err
            break
    if summary_table:
        _store(summary_table, day, records)
    if failure is not None:
        print(headline({"run_date": day, "stages": records}))
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


def _store(table: str, day: dt.date, records: list[dict]) -> None:
    from jobs.session import get_session
    from schemas.pipeline import PIPELINE_RUNS

    spark = get_session("grouprank-pipeline")
    df = spark.createDataFrame([tuple(r[c] for c in PIPELINE_RUNS.fieldNames()) for r in records],
                               PIPELINE_RUNS)
    write_run_date_partition(df, table, day, "summary")
