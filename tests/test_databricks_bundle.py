"""databricks.yml, checked offline (``databricks bundle validate`` needs a workspace login).

Each job goes through databricks-sdk's Jobs API dataclasses and back, so a misspelt or misplaced
key (which the dataclasses drop) fails; the task graph must be acyclic over existing task keys;
and each task's parameters must parse with that job's own flag parser and settings checks.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobs.args import dataclass_from_args
from jobs.stages import STAGES, check, config_classes, parser

REPO = Path(__file__).resolve().parents[1]
_VAR = re.compile(r"\$\{var\.(\w+)\}")
_JOB_PARAMETER = re.compile(r"\{\{job\.parameters\.(\w+)\}\}")
_DYNAMIC = {"{{job.start_time.iso_date}}": dt.date(2026, 11, 27).isoformat()}


def _bundle() -> dict:
    bundle = yaml.safe_load((REPO / "databricks.yml").read_text())
    for pattern in bundle.get("include", []):
        paths = sorted(REPO.glob(pattern))
        assert paths, f"include {pattern} matches nothing"
        for path in paths:
            for kind, items in yaml.safe_load(path.read_text())["resources"].items():
                bundle.setdefault("resources", {}).setdefault(kind, {}).update(items)
    return bundle


BUNDLE = _bundle()
JOBS = BUNDLE["resources"]["jobs"]


def _resolve_variables(value: Any, variables: dict[str, Any]) -> Any:
    """Replaces ${var.NAME} with the variable's default (a whole-string reference keeps its type)."""
    if isinstance(value, dict):
        return {k: _resolve_variables(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_variables(v, variables) for v in value]
    if isinstance(value, str):
        for name in _VAR.findall(value):
            assert name in variables, f"${{var.{name}}} is not declared under variables"
        whole = _VAR.fullmatch(value)
        if whole:
            return variables[whole.group(1)]
        return _VAR.sub(lambda m: str(variables[m.group(1)]), value)
    return value


def _job(key: str) -> dict:
    variables = {name: spec["default"] for name, spec in BUNDLE["variables"].items()}
    return _resolve_variables(JOBS[key], variables)


def _dropped(original: Any, round_trip: Any, path: str = "") -> list[str]:
    """Keys (as paths) present in ``original`` but missing or changed after the round trip."""
    if isinstance(original, dict):
        if not isinstance(round_trip, dict):
            return [path or "/"]
        return [p for k, v in original.items()
                for p in (_dropped(v, round_trip[k], f"{path}/{k}") if k in round_trip
                          else [f"{path}/{k}"])]
    if isinstance(original, list):
        if not isinstance(round_trip, list) or len(original) != len(round_trip):
            return [path]
        return [p for i, (a, b) in enumerate(zip(original, round_trip))
                for p in _dropped(a, b, f"{path}[{i}]")]
    return [] if original == round_trip or str(original) == str(round_trip) else [path]


def test_bundle_declares_jobs_and_a_wheel_artifact():
    assert BUNDLE["bundle"]["name"]
    assert JOBS, "no jobs under resources.jobs"
    assert any(a.get("type") == "whl" for a in BUNDLE["artifacts"].values())
    assert {"dev", "prod"} <= set(BUNDLE["targets"])
    for target in BUNDLE["targets"].values():
        assert set(target.get("variables", {})) <= set(BUNDLE["variables"])


@pytest.mark.parametrize("key", sorted(JOBS))
def test_job_round_trips_through_the_jobs_api_dataclasses(key):
    from databricks.sdk.service.jobs import JobSettings

    job = _job(key)
    assert _dropped(job, JobSettings.from_dict(job).as_dict()) == []


@pytest.mark.parametrize("key", sorted(JOBS))
def test_task_graph_is_acyclic_over_existing_tasks_and_clusters(key):
    job = _job(key)
    tasks = {t["task_key"]: t for t in job["tasks"]}
    assert len(tasks) == len(job["tasks"]), "duplicate task_key"
    clusters = {c["job_cluster_key"] for c in job.get("job_clusters", [])}
    for task in tasks.values():
        for dependency in task.get("depends_on", []):
            assert dependency["task_key"] in tasks, (task["task_key"], dependency)
            if "outcome" in dependency:  # outcomes exist only on condition tasks
                assert "condition_task" in tasks[dependency["task_key"]]
                assert dependency["outcome"] in ("true", "false")
        if "condition_task" not in task:
            assert task.get("job_cluster_key") in clusters, task["task_key"]
    order, done = [], set()
    while len(done) < len(tasks):  # Kahn's algorithm: fails to progress on a cycle
        ready = [k for k, t in tasks.items() if k not in done
                 and all(d["task_key"] in done for d in t.get("depends_on", []))]
        assert ready, f"cycle among {sorted(set(tasks) - done)}"
        order += sorted(ready)
        done.update(ready)
    assert order.index("rerank") < order.index("evaluate")
    if "retrieve" in tasks:
        assert order.index("retrieve") < order.index("rerank")


@pytest.mark.parametrize("key", sorted(JOBS))
def test_every_task_parameter_is_a_flag_of_its_job(key):
    job = _job(key)
    defaults = {p["name"]: p["default"] for p in job.get("parameters", [])}
    used: set[str] = set()
    for task in job["tasks"]:
        wheel_task = task.get("python_wheel_task")
        if wheel_task is None:
            continue
        assert wheel_task["entry_point"] == "grouprank"  # [project.scripts] in pyproject.toml
        command, *argv = wheel_task["parameters"]
        assert command in STAGES, command
        resolved = []
        for value in argv:
            for name in _JOB_PARAMETER.findall(value):
                assert name in defaults, f"{{{{job.parameters.{name}}}}} is not a job parameter"
                used.add(name)
            value = _JOB_PARAMETER.sub(lambda m: str(defaults[m.group(1)]), value)
            resolved.append(_DYNAMIC.get(value, value))
        args = parser(command).parse_args(resolved)  # an unknown flag or bad value exits here
        # The job's own checks of the values (ranges, choices, table references).
        check(command, *(dataclass_from_args(c, args) for c in config_classes(command)))
    conditions = " ".join(str(t.get("condition_task", "")) for t in job["tasks"])
    used |= set(_JOB_PARAMETER.findall(conditions))
    assert set(defaults) <= used | {"run_date"}, f"unused job parameters {set(defaults) - used}"


def test_the_schedule_is_a_valid_quartz_cron():
    for key in JOBS:
        schedule = _job(key)["schedule"]
        fields = schedule["quartz_cron_expression"].split()
        assert len(fields) in (6, 7), schedule
        assert schedule["timezone_id"] and schedule["pause_status"] in ("PAUSED", "UNPAUSED")
