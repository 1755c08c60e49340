"""The per-worker model cache every UDF loads its models through, and the task's device.

Operating limits, as for PySpark's ``pyspark.ml.model_cache.ModelCache``: with
``spark.python.worker.reuse`` (the default) a Python worker lives across tasks, so a model
loaded by one task serves every later task of that worker. Entries are keyed by what decides the
weights (model identity, device, ``trust_remote_code``), never by scoring knobs, which apply per
call: changing ``--batch-tokens`` in a notebook reuses the loaded model. At most
``GROUPRANK_WORKER_MODELS`` (default 2) models stay loaded per worker; loading one more evicts the
least recently used, and its accelerator memory is handed back before the new one loads.
"""

from __future__ import annotations

import gc
import os
import sys
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TypeVar

T = TypeVar("T")

_ENTRIES: OrderedDict[Hashable, object] = OrderedDict()
# Models loaded by this worker so far (benchmarks and the job summary read it to prove one
# load per worker).
_LOADS = 0


def max_models() -> int:
    """How many models a worker keeps loaded (``GROUPRANK_WORKER_MODELS``, default 2)."""
    return max(1, int(os.environ.get("GROUPRANK_WORKER_MODELS", "2")))


def cached(key: Hashable, factory: Callable[[], T]) -> T:
    """Returns the object cached in this Python worker under ``key``, building it once.

    Example:
        >>> cached(("doc", 1), lambda: "model") == cached(("doc", 1), lambda: "other")
        True
    """
    global _LOADS
    if key in _ENTRIES:
        _ENTRIES.move_to_end(key)
        return _ENTRIES[key]  # type: ignore[return-value]
    while len(_ENTRIES) >= max_models():
        _ENTRIES.popitem(last=False)
        _free_accelerator_memory()
    value = factory()
    _ENTRIES[key] = value
    _LOADS += 1
    return value


def loads() -> int:
    """Models this worker has loaded so far (evicted and reloaded ones count again)."""
    return _LOADS


def cached_keys() -> list[Hashable]:
    """The keys cached now, least recently used first."""
    return list(_ENTRIES)


def _free_accelerator_memory() -> None:
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def task_device() -> str:
    """The device for this task: the GPU Spark assigned, else the first visible GPU, else CPU."""
    import torch
    from pyspark import TaskContext

    context = TaskContext.get()
    gpus = context.resources().get("gpu") if context is not None else None
    if gpus is not None and gpus.addresses and torch.cuda.is_available():
        return f"cuda:{gpus.addresses[0]}"
    if torch.cuda.is_available():
        return "cuda:0"
    # On CPU use the cores Spark gave this task (spark.task.cpus), not every core of the host.
    cpus = context.cpus() if context is not None else os.cpu_count() or 1
    torch.set_num_threads(max(1, cpus))
    return "cpu"


def warm_model_udf(settings, ref) -> Callable:
    """Builds the ``mapInPandas`` function that loads ``ref`` into this worker's cache under
    the key its embedding or scoring UDF uses, and returns one ``WORKER_WARM_UP`` row."""

    def warm(batches):
        import pandas as pd

        for _ in batches:
            pass
        if ref.precomputed_embeddings:
            from udfs.embedding import text_encoder

            text_encoder(settings, ref, task_device())
        else:
            from udfs.scoring import get_scorer

            get_scorer(settings, ref, task_device())
        yield pd.DataFrame({"loads": [loads()]})

    return warm
