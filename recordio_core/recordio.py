"""`recordio_core.recordio`, the path the README documents, is now
`recordio_core.format.recordio`: this module makes the old name that very module."""

import sys

from recordio_core.format import recordio as _moved

sys.modules[__name__] = _moved
