"""Everything a run leaves behind: the terminal table, ``results.json``, the tables, the PNG.

``results.json`` holds every raw number (per topology, setup and workload, exactly as the
clients and /proc reported them), the plan, the environment and the target verdicts; the
tables (``table.txt`` as printed, ``table.md`` for the README) and the chart are views of it.
The results folder is created if needed and never emptied: a run writes its own files and
touches nothing else.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict
from typing import Any

from rich.console import Console

from bench.chart import MISSING_MATPLOTLIB, draw_chart
from bench.environment import describe_environment
from bench.plan import Plan
from bench.report import markdown_tables, print_tables, verdicts

__all__ = ["write_outputs"]


def write_outputs(plan: Plan, results: dict[str, Any], console: Console) -> int:
    """Print the tables, write the files; the exit status (1 when a setup failed)."""
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    document = {
        "environment": describe_environment(),
        "plan": asdict(plan) | {"out_dir": str(plan.out_dir)},
        "verdicts": verdicts(results),
        **results,
    }
    (plan.out_dir / "results.json").write_text(json.dumps(document, indent=2) + "\n")
    recorder = Console(record=True, width=160, file=io.StringIO())  # records, shows nothing
    print_tables(results, plan.setups, recorder)
    (plan.out_dir / "table.txt").write_text(recorder.export_text())
    (plan.out_dir / "table.md").write_text(markdown_tables(results, plan.setups))
    print_tables(results, plan.setups, console)
    if draw_chart(results, plan.setups, plan.out_dir / "chart.png"):
        console.print(f"chart: {plan.out_dir / 'chart.png'}")
    else:
        console.print(MISSING_MATPLOTLIB, markup=False)
    console.print(f"results: {plan.out_dir / 'results.json'}")
    failed = any(
        outcome.get("error")
        for by_setup in results["topologies"].values()
        for outcome in by_setup.values()
    )
    return 1 if failed else 0
