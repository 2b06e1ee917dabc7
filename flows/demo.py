"""`make demo`: generate a small image folder and build a dataset from it end to end."""

from __future__ import annotations

import sys


def main() -> int:
    print("demo: not wired yet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
