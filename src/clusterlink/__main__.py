"""``python -m clusterlink``: the same entry point as the console script."""

from clusterlink.cli.main import run

run()
