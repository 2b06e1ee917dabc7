"""`recordio_core.torch_dataset`, the path the README documents, is now
`recordio_core.reading.torch_dataset`: this module makes the old name that very module."""

import sys

from recordio_core.reading import torch_dataset as _moved

sys.modules[__name__] = _moved
