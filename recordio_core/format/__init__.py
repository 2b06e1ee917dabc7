"""The byte format: record framing, the mxnet.recordio API, .idx and .lst files, the dataset
manifest, and the errors they raise.
"""
