"""spark-submit entry points (one per job) and the DataFrame transforms they call."""
