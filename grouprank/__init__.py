"""GroupRank: groupwise LLM reranking (arXiv 2511.11653), the model side.

Nothing in this package imports Spark: prompts, parsing, grouping math, scoring backends and
settings are plain Python, testable with pandas and a tiny model.
"""

__version__ = "0.1.0"
