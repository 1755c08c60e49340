"""Thin pandas-UDF wrappers that apply ``grouprank`` to Spark batches."""
