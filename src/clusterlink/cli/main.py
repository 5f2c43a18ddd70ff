"""Console entry point (placeholder until the CLI lands)."""

import sys

from clusterlink import __version__


def run() -> None:
    if sys.argv[1:] == ["--version"]:
        print(f"clusterlink {__version__}")
        return
    sys.exit(2)
