"""The command line: ``python -m bench run [options]``.

It turns flags into a ``Plan``, runs it, and hands the results to the report (terminal table,
JSON, chart). Exit status: 0 when every setup produced its numbers, 1 when any failed or the
run could not start (one line on stderr saying why), 2 on usage errors, 130 when interrupted.
SIGTERM and SIGINT (even where the shell started the run with SIGINT ignored) are treated
like Ctrl-C, so a killed run still stops its processes and removes its namespaces.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import FrameType

from rich.console import Console

from bench.errors import BenchError
from bench.output import write_outputs
from bench.plan import (
    DEFAULT_DURATION_S,
    DEFAULT_IDLE_TUNNELS,
    QUICK_DURATION_S,
    QUICK_IDLE_TUNNELS,
    SETUPS,
    Plan,
)
from bench.runner import run_plan
from bench.topology import TOPOLOGIES
from bench.workloads import Workload

__all__ = ["main"]

_RESULTS_DIR = Path(__file__).with_name("results")


def _names(allowed: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    """An argparse ``type`` for a comma-separated subset of ``allowed``, in the given order."""

    def parse(text: str) -> tuple[str, ...]:
        names = tuple(n.strip() for n in text.split(",") if n.strip())
        if unknown := [n for n in names if n not in allowed]:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(unknown)}; choose from {', '.join(allowed)}"
            )
        return names

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure clusterlink against a direct connection, stunnel and HAProxy.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the benchmark and write its results")
    run.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_DURATION_S:g} s per workload and {QUICK_IDLE_TUNNELS} idle tunnels",
    )
    run.add_argument(
        "--only",
        nargs="+",
        choices=[w.value for w in Workload],
        metavar="WORKLOAD",
        help=f"run only these workloads ({', '.join(w.value for w in Workload)})",
    )
    run.add_argument(
        "--setups",
        type=_names(SETUPS),
        default=SETUPS,
        help=f"comma-separated, default {','.join(SETUPS)}",
    )
    run.add_argument(
        "--topology",
        type=_names(TOPOLOGIES),
        default=TOPOLOGIES,
        help=f"comma-separated, default {','.join(TOPOLOGIES)} (netns needs root)",
    )
    run.add_argument(
        "--duration", type=float, help=f"seconds per workload (default {DEFAULT_DURATION_S:g})"
    )
    run.add_argument(
        "--idle-tunnels",
        type=int,
        help=f"idle tunnels to open (default {DEFAULT_IDLE_TUNNELS})",
    )
    run.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each measuring workload N times and report the median run (default 1)",
    )
    run.add_argument(
        "--gateway-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="an extra flag for both gateways, e.g. --gateway-arg=--tunnel-mode=basic (repeatable)",
    )
    run.add_argument(
        "--out", type=Path, help="results folder (default bench/results/YYYYMMDD-HHMMSS)"
    )
    run.add_argument(
        "--keep-work", action="store_true", help="keep the work directory (configs, logs)"
    )
    return parser


def _plan(args: argparse.Namespace) -> Plan:
    duration_s = args.duration or (QUICK_DURATION_S if args.quick else DEFAULT_DURATION_S)
    idle = args.idle_tunnels or (QUICK_IDLE_TUNNELS if args.quick else DEFAULT_IDLE_TUNNELS)
    if duration_s <= 0 or idle <= 0 or args.repeat <= 0:
        raise BenchError("--duration, --idle-tunnels and --repeat must be positive")
    out = args.out or _RESULTS_DIR / datetime.now().strftime("%Y%m%d-%H%M%S")
    workloads = tuple(Workload(w) for w in args.only) if args.only else tuple(Workload)
    return Plan(
        topologies=args.topology,
        setups=args.setups,
        workloads=workloads,
        duration_s=duration_s,
        idle_tunnels=idle,
        repeat=args.repeat,
        out_dir=out,
        gateway_args=tuple(args.gateway_arg),
    )


def _table_console() -> Console:
    """The terminal, or 160 columns when the output is a file or a pipe (rich would pick 80)."""
    return Console() if sys.stdout.isatty() else Console(width=160)


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console(stderr=True)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    # a shell starts background jobs with SIGINT ignored; a run must stop cleanly on it anyway
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        plan = _plan(args)
        results = run_plan(plan, console, keep_work=args.keep_work)
        return write_outputs(plan, results, _table_console())
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
