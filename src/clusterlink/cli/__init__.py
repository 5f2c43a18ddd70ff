"""The ``clusterlink`` command line (DESIGN §6, a contract that outside tools drive).

``main`` assembles the command tree and is the console script's entry point (``run``);
``context`` holds the global options and the one place errors become exit codes; ``fabric``,
``gateway`` and ``manage`` hold the commands; ``documents`` builds resources from flags and
``render`` prints what commands fetched as tables, JSON or YAML. Nothing imports ``cli``.
"""
