"""The ``grouprank`` command line: one subcommand per registered stage (``jobs.stages``).

    grouprank rerank --candidates PATH --output PATH --run-date 2026-11-27
    grouprank demo

Only the registry and the stage's config dataclasses are read to build a parser, so
``grouprank --help`` and ``grouprank JOB --help`` answer at once; Spark and torch are imported
when a job runs.
"""

from __future__ import annotations

import argparse
import sys

from jobs.stages import STAGES
from jobs.stages import main as run_stage


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="grouprank", description="Groupwise LLM reranking on Spark",
        epilog="jobs:\n" + "\n".join(f"  {s.name:<11} {s.summary}" for s in STAGES.values())
        + "\n\n'grouprank JOB --help' lists a job's flags.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=sorted(STAGES))
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    args = parser.parse_args(argv[:1])
    return run_stage(args.command, argv[1:])


if __name__ == "__main__":
    sys.exit(main())
