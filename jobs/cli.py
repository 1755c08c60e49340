"""The ``grouprank`` command line: one subcommand per job.

    grouprank rerank --candidates PATH --output PATH --run-date 2026-11-27
    grouprank demo

A job's module (and with it Spark and torch) is imported only when that job is asked for, so
``grouprank --help`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Subcommand -> (module under jobs/, one line for --help).
_COMMANDS = {
    "rerank": ("rerank", "rerank a candidates table into a run date's Delta partition"),
    "demo": ("demo", "the bundled sample through the rerank job"),
    "ingest": ("ingest", "benchmark files -> corpus, queries, qrels tables"),
    "retrieve": ("retrieve", "first stage (BM25, dense, hybrid) -> a candidates table"),
    "evaluate": ("evaluate", "trec_eval-compatible metrics of a run against qrels"),
    "synthesize": ("synthesize", "answer-free training samples from two teachers"),
    "publish": ("publish", "publish a night's top-k to a serving table, behind gates"),
    "pipeline": ("pipeline", "retrieve -> rerank -> evaluate for one night"),
    "train-sft": ("train_sft", "supervised fine-tuning on a samples table"),
    "train-rl": ("train_rl", "GRPO with the group-ranking reward"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="grouprank", description="Groupwise LLM reranking on Spark",
        epilog="jobs:\n" + "\n".join(f"  {name:<11} {help}" for name, (_, help) in _COMMANDS.items())
        + "\n\n'grouprank JOB --help' lists a job's flags.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=sorted(_COMMANDS))
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    args, rest = parser.parse_known_args(argv[:1])
    module = importlib.import_module(f"jobs.{_COMMANDS[args.command][0]}")
    return module.main(rest + argv[1:])


if __name__ == "__main__":
    sys.exit(main())
