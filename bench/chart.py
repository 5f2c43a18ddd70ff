"""The results as one PNG: a small bar chart per metric, setups side by side per topology.

matplotlib is optional: it is imported only here and only when a chart
is drawn, so the benchmark runs, and its smoke test passes, without it; the run then says
that the chart was skipped and how to get it. The chart shows the same numbers as the table
(``metrics.value_of``), never numbers of its own, for the tunnels only: next to the direct
baseline (often ten times higher) their bars would be too small to compare.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.metrics import METRICS, value_of

__all__ = ["MISSING_MATPLOTLIB", "draw_chart"]

MISSING_MATPLOTLIB = (
    "chart skipped: matplotlib is not installed (.venv/bin/pip install -e '.[bench]')"
)
_COLUMNS = 4
_COLORS = {
    "direct": "#9e9e9e",
    "stunnel": "#1f77b4",
    "haproxy": "#ff7f0e",
    "clusterlink": "#2ca02c",
}


def draw_chart(results: Mapping[str, Any], setups: tuple[str, ...], path: Path) -> bool:
    """Write the chart to ``path``; False (nothing written) when matplotlib is missing."""
    # the ignores: matplotlib is an optional extra, absent where the checks may run
    try:
        import matplotlib as mpl  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return False
    mpl.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]

    topologies = list(results["topologies"])
    setups = tuple(s for s in setups if s != "direct")  # its bars would dwarf the tunnels'
    rows = math.ceil(len(METRICS) / _COLUMNS)
    figure, axes = plt.subplots(rows, _COLUMNS, figsize=(4 * _COLUMNS, 3 * rows), squeeze=False)
    width = 0.8 / max(1, len(setups))
    for index, metric in enumerate(METRICS):
        ax = axes[index // _COLUMNS][index % _COLUMNS]
        for offset, setup in enumerate(setups):
            heights = [
                value_of(metric, results["topologies"][t].get(setup, {})) or 0.0 for t in topologies
            ]
            positions = [
                i + (offset - (len(setups) - 1) / 2) * width for i in range(len(topologies))
            ]
            ax.bar(positions, heights, width, label=setup, color=_COLORS.get(setup))
        ax.set_title(metric.label.strip(), fontsize=9)
        ax.set_xticks(range(len(topologies)), topologies, fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    for index in range(len(METRICS), rows * _COLUMNS):
        axes[index // _COLUMNS][index % _COLUMNS].axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.suptitle("clusterlink vs stunnel and HAProxy (the direct baseline is in the table)")
    figure.legend(handles, labels, loc="upper center", ncol=len(setups), bbox_to_anchor=(0.5, 0.97))
    figure.tight_layout(rect=(0, 0, 1, 0.93))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
