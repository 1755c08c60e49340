"""The registry of stages: every job the project runs, and the one way each is started.

A stage is one module under ``jobs/stages/`` with:

- ``check(*configs)``: validation of its flags before any work (no Spark, no model);
- its pure DataFrame transforms (no I/O: notebooks and tests call exactly what the job calls);
- ``run(*configs) -> dict``: check, read, transform, write; returns the job's summary;
- ``headline(summary) -> str``: the human lines printed above the JSON summary.

Its config dataclasses are in ``jobs/configs.py`` (or ``grouprank/settings.py``), named here, so
``grouprank <job> --help`` builds the parser without importing the stage (no Spark, no torch).
Everything else is derived from this registry: the ``grouprank`` subcommands, the spark-submit
shims ``jobs/<job>.py``, the notebooks' widgets (``jobs.notebook.job_arguments``), the
pipeline's YAML sections, the bundle's task parameters and the flag tables in docs/RUNNING.md
(``scripts/schema_docs.py``), each checked by a test. Adding a stage is one module plus one
``Stage`` line below.

    >>> parser("rerank").parse_args(["--candidates", "c", "--output", "o",
    ...                              "--run-date", "2026-11-27"]).group_size
    20
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from jobs.args import add_dataclass_arguments, dataclass_from_args

log = logging.getLogger("jobs.stages")


@dataclass(frozen=True)
class Stage:
    """One job: its subcommand, what it does, its config dataclasses and its module."""

    # The subcommand (``grouprank NAME``) and the pipeline section's key.
    name: str
    # One line for ``grouprank --help`` and the job's own ``--help``.
    summary: str
    # Its config dataclasses as "module:Class", in the order ``run`` takes them.
    configs: tuple[str, ...]
    # Module under jobs/stages/ holding check, the transforms, run and headline.
    module: str


STAGES: dict[str, Stage] = {stage.name: stage for stage in (
    Stage("rerank", "rerank a candidates table into a run date's Delta partition",
          ("jobs.configs:RerankJob", "grouprank.settings:RerankSettings"), "rerank"),
    Stage("demo", "the bundled sample through the rerank job",
          ("jobs.configs:DemoJob",), "demo"),
    Stage("ingest", "benchmark files -> corpus, queries, qrels tables",
          ("jobs.configs:IngestJob",), "ingest"),
    Stage("retrieve", "first stage (BM25, dense, hybrid) -> a candidates table",
          ("jobs.configs:RetrieveJob",), "retrieve"),
    Stage("evaluate", "trec_eval-compatible metrics of a run against qrels",
          ("jobs.configs:EvaluateJob",), "evaluate"),
    Stage("synthesize", "answer-free training samples from two teachers",
          ("jobs.configs:SynthesizeJob", "grouprank.settings:SynthesisSettings"), "synthesize"),
    Stage("publish", "publish a night's top-k to a serving table, behind gates",
          ("jobs.configs:PublishJob",), "publish"),
    Stage("pipeline", "retrieve -> rerank -> evaluate -> publish for one night",
          ("jobs.configs:PipelineJob",), "pipeline"),
    Stage("train-sft", "supervised fine-tuning on a samples table",
          ("jobs.configs:SFTBase", "jobs.configs:TrainJob"), "train_sft"),
    Stage("train-rl", "GRPO with the group-ranking reward",
          ("jobs.configs:RLInit", "jobs.configs:TrainJob", "jobs.configs:RLOptions"),
          "train_rl"),
    Stage("setup", "fill the Delta jar cache (once, after install) and check a local session",
          ("jobs.configs:SetupJob",), "setup"),
)}


def stage(name: str) -> Stage:
    """The registered stage ``name``; a one-line error naming the known ones otherwise."""
    try:
        return STAGES[name]
    except KeyError:
        raise ValueError(f"no stage {name!r}; stages: {', '.join(STAGES)}") from None


def config_classes(name: str) -> tuple[type, ...]:
    """The stage's config dataclasses, in the order its ``run`` takes them."""
    classes = []
    for ref in stage(name).configs:
        module, cls = ref.split(":")
        classes.append(getattr(importlib.import_module(module), cls))
    return tuple(classes)


def stage_module(name: str) -> ModuleType:
    """The stage's module (imports Spark and, for model stages, torch)."""
    return importlib.import_module(f"jobs.stages.{stage(name).module}")


def parser(name: str) -> argparse.ArgumentParser:
    """The stage's argument parser: one flag per config field, and ``--verbose``. The one parser
    builder: the command line, the notebooks, the pipeline and the docs test all use it."""
    parsed = argparse.ArgumentParser(prog=f"grouprank {name}", description=stage(name).summary)
    for cls in config_classes(name):
        add_dataclass_arguments(parsed, cls)
    parsed.add_argument(
        "--verbose", action="store_true",
        help="the project's logs at DEBUG and Spark's at INFO (default: INFO and WARN)",
    )
    return parsed


def flags(name: str) -> set[str]:
    """Every flag the stage's parser accepts (``--no-X`` for booleans, and ``--help``)."""
    return {option for action in parser(name)._actions for option in action.option_strings}


def configs_from(name: str, values: dict[str, Any], where: str) -> tuple[Any, ...]:
    """The stage's config objects from a mapping of field names (a pipeline YAML section): each
    key goes to the dataclass that declares it; unknown keys fail naming them."""
    classes = config_classes(name)
    known = {f.name for cls in classes for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    objects = []
    for cls in classes:
        fields = {f.name for f in dataclasses.fields(cls)}
        try:
            objects.append(cls(**{k: v for k, v in values.items() if k in fields}))
        except TypeError as err:
            raise ValueError(f"{where}: {err}") from err
    return tuple(objects)


def check(name: str, *configs: Any) -> None:
    """The stage's flag validation (raises ``ValueError`` naming the flag)."""
    stage_module(name).check(*configs)


def run(name: str, *configs: Any, report: bool = True) -> dict:
    """Runs the stage and, with ``report``, prints its headline and JSON summary line."""
    from jobs.entry import Refused, print_summary

    module = stage_module(name)
    try:
        summary = module.run(*configs)
    except Refused as err:
        if report and err.summary is not None:
            print_summary(module.headline(err.summary), err.summary)
        raise
    if report:
        print_summary(module.headline(summary), summary)
    return summary


def main(name: str, argv: list[str] | None = None) -> int:
    """``grouprank NAME ARGS``: parses, runs, and returns the exit code (0, or 2 with a one-line
    error for bad input; see ``jobs.entry.exit_code``)."""
    from jobs.entry import configure_logging, exit_code

    args = parser(name).parse_args(argv)
    configure_logging(args.verbose)
    try:
        run(name, *(dataclass_from_args(cls, args) for cls in config_classes(name)))
    except Exception as err:
        return exit_code(name, err)
    return 0


def shim(name: str) -> None:
    """What ``spark-submit jobs/<job>.py ARGS`` runs."""
    sys.exit(main(name, sys.argv[1:]))
