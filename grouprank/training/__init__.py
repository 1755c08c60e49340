"""Training GroupRank rerankers on the synthesized samples (SFT, then RL), without Spark."""
