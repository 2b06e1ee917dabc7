"""`recordio_core.reader`, the path the README documents, is now
`recordio_core.reading.reader`: this module makes the old name that very module."""

import sys

from recordio_core.reading import reader as _moved

sys.modules[__name__] = _moved
