"""Storage I/O over fsspec: opening URLs and atomic writes, concurrent fetches and uploads, ranged
block reads and their local cache, tree listings.
"""
