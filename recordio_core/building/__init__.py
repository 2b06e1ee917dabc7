"""Building a dataset: list the source, split, plan shards, pack them, validate them, combine
shards, data quality, dry runs, progress and report tables.
"""
