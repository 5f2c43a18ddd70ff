"""What one run measures, decided once from the command line.

The defaults give each measuring workload a few seconds (a short duration) and
open 5,000 idle tunnels; ``--quick`` shortens both for a first look. Throughput runs take
whole seconds because iperf3 does. Warm-up is part of each workload (samples from it are not
counted) and scales with the duration, capped at one second.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.workloads import Workload

__all__ = ["DEFAULT_DURATION_S", "QUICK_DURATION_S", "SETUPS", "Plan"]

SETUPS = ("direct", "stunnel", "haproxy", "clusterlink")
DEFAULT_DURATION_S = 5.0
QUICK_DURATION_S = 1.5
DEFAULT_IDLE_TUNNELS = 5000
QUICK_IDLE_TUNNELS = 1000
_WARMUP_SHARE = 0.2
_WARMUP_MAX_S = 1.0


@dataclass(frozen=True, slots=True)
class Plan:
    topologies: tuple[str, ...]
    setups: tuple[str, ...]
    workloads: tuple[Workload, ...]
    duration_s: float
    idle_tunnels: int
    repeat: int
    out_dir: Path
    gateway_args: tuple[str, ...] = ()

    @property
    def throughput_s(self) -> int:
        return max(1, round(self.duration_s))

    @property
    def warmup_s(self) -> float:
        return min(_WARMUP_MAX_S, self.duration_s * _WARMUP_SHARE)
