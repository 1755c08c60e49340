"""The ``grouprank`` command line: one subcommand per job.

    grouprank rerank --candidates PATH --output PATH --run-date 2026-11-27
    grouprank demo
"""

from __future__ import annotations

import argparse
import sys

from jobs import (
    demo,
    evaluate,
    ingest,
    pipeline,
    rerank,
    retrieve,
    synthesize,
    train_rl,
    train_sft,
)

_COMMANDS = {
    "rerank": rerank,
    "demo": demo,
    "ingest": ingest,
    "retrieve": retrieve,
    "evaluate": evaluate,
    "synthesize": synthesize,
    "pipeline": pipeline,
    "train-sft": train_sft,
    "train-rl": train_rl,
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="grouprank", description="Groupwise LLM reranking on Spark")
    parser.add_argument("command", choices=sorted(_COMMANDS))
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    args, rest = parser.parse_known_args(argv[:1])
    return _COMMANDS[args.command].main(rest + argv[1:])


if __name__ == "__main__":
    sys.exit(main())
