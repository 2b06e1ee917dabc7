"""Reading a dataset: the ImageRecordIter-style reader and its parts (options, labels, record
plans, shuffles, partitions, decoding, prefetch), the PyTorch adapter, shard sources and
`recflow inspect`'s summary.
"""
