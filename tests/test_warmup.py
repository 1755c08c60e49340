"""Warming a Python worker while the job validates (jobs.warmup): the warm-up loads the model
under the very key the job's UDFs then find, and only a new local session's first job warms."""

from __future__ import annotations

from grouprank.models import model_ref
from grouprank.settings import RerankSettings
from jobs import session as session_module
from jobs.session import first_job_in_new_local_session
from udfs import cache
from udfs.cache import warm_model_udf


def _warm(settings, ref) -> list[int]:
    return [int(frame["loads"][0]) for frame in warm_model_udf(settings, ref)(iter([]))]


def test_the_warm_up_loads_what_the_embedding_stage_then_reuses():
    from udfs.embedding import text_encoder

    settings, ref = RerankSettings(precision="fp32"), model_ref("default")
    (after_warm,) = _warm(settings, ref)
    assert after_warm == cache.loads() >= 1
    text_encoder(settings, ref, "cpu")(["a text"])
    assert cache.loads() == after_warm  # found in the cache, not loaded again


def test_the_warm_up_loads_what_the_scoring_udf_then_reuses(tiny_model_dir):
    from udfs.scoring import get_scorer

    settings = RerankSettings(model=str(tiny_model_dir), precision="fp32")
    ref = model_ref(settings.model)
    (after_warm,) = _warm(settings, ref)
    get_scorer(settings, ref, "cpu")
    assert cache.loads() == after_warm


def test_only_the_first_job_of_a_local_session_built_here_warms(spark, monkeypatch):
    monkeypatch.setattr(session_module, "_BUILT_LOCAL", None)
    assert not first_job_in_new_local_session(spark)  # a session this code was handed
    monkeypatch.setattr(session_module, "_BUILT_LOCAL", spark)
    assert first_job_in_new_local_session(spark)
    assert not first_job_in_new_local_session(spark)  # the next job finds workers started


def test_the_job_waits_for_the_warm_up_before_its_model_stages(spark):
    from jobs import warmup

    thread = warmup.warm_a_worker(spark, RerankSettings(precision="fp32"), model_ref("default"))
    warmup.wait_for_warm_worker()
    assert not thread.is_alive() and warmup._PENDING is None
    warmup.wait_for_warm_worker()  # nothing pending: returns at once
