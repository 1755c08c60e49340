"""Scoring backends behind one small interface: a batch of groups in, 0-10 scores out.

The reranking job, its UDF and its output only see ``GroupScorer``; a new backbone (for example a
non-generative groupwise encoder) plugs in by implementing it and registering in
``grouprank.models.load_scorer``.
"""

from grouprank.backends.base import GroupInput, GroupResult, GroupScorer

__all__ = ["GroupInput", "GroupResult", "GroupScorer"]
