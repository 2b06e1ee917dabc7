"""`recordio_core.manifest`, the path the README documents, is now
`recordio_core.format.manifest`: this module makes the old name that very module."""

import sys

from recordio_core.format import manifest as _moved

sys.modules[__name__] = _moved
