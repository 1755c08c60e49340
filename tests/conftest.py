"""Shared fixtures: one local SparkSession with Delta, and a tiny random Llama on disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """A local[2] SparkSession with Delta Lake (the jars come from the local Ivy cache)."""
    os.environ.setdefault("GROUPRANK_CACHE", str(Path.home() / ".cache" / "grouprank"))
    from jobs.session import get_session

    warehouse = tmp_path_factory.mktemp("warehouse")
    conf = {
        "spark.sql.warehouse.dir": str(warehouse),
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "4",
    }
    session = get_session("grouprank-tests", master="local[2]", conf=conf)
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random-initialised Llama + tokenizer saved as safetensors."""
    from tests.tiny_model import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or a skip with the reason when this machine does not have it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real IR collections not found at {SHARED_DATA} (only on the dev machines)")
    return SHARED_DATA
