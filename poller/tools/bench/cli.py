"""``poller bench``: the command, its parser, and the children's entry point."""

from __future__ import annotations

import argparse
import functools
import os
import platform
import signal
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import msgspec

from poller.tools.bench.cluster import bench_cluster
from poller.tools.bench.cpu import bench_decode_diff, child_cpu
from poller.tools.bench.latency import bench_latency
from poller.tools.bench.memory import (
    bench_memory,
    child_memory_baseline,
    child_memory_build,
    child_memory_load,
)
from poller.tools.bench.progress import Progress, load_average
from poller.tools.bench.publish import bench_publish
from poller.tools.bench.push import bench_push
from poller.tools.bench.report import cluster_figures, figures, push_figures, render_table
from poller.tools.bench.results import Machine, Outcome, Results
from poller.tools.bench.scenarios import SCENARIOS
from poller.tools.bench.simprocess import child_simulator
from poller.tools.bench.sizes import FULL, QUICK

__all__ = ["PARTS", "QUICK_PARTS", "build_parser", "child_main", "main", "run_bench", "run_cli"]


def child_main(args: list[str]) -> int:
    """``--child KIND ...``: the measurements that need a process of their own."""
    kind, rest = args[0], args[1:]
    result: msgspec.Struct
    if kind == "memory-build":
        result = anyio.run(child_memory_build, int(rest[0]), int(rest[1]), rest[2] or None)
    elif kind == "memory-load":
        result = anyio.run(child_memory_load, rest[2])
    elif kind == "memory-baseline":
        result = child_memory_baseline(int(rest[0]), int(rest[1]))
    elif kind in ("cpu-ours", "cpu-baseline"):
        n, page_size, repeats, seed = (int(x) for x in rest)
        result = child_cpu(kind.removeprefix("cpu-"), n, page_size, repeats, seed)
    elif kind == "simulator":
        entities, page_size, seed, restarts = (int(x) for x in rest[1:5])
        anyio.run(child_simulator, rest[0], entities, page_size, seed, restarts)
        return 0
    else:
        print(f"unknown child {kind!r}", file=sys.stderr)
        return 2
    sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
    return 0


# -- the command ----------------------------------------------------------------------------------
PARTS = ("cpu", "memory", "publish", "latency", "push", "cluster")
#: what ``--quick`` runs unless told: the cluster part waits for leader elections and lease expiry,
#: which no small size shortens, so it runs only when named (``--quick --only cluster``)
QUICK_PARTS = tuple(part for part in PARTS if part != "cluster")


async def run_bench(
    *,
    quick: bool,
    seed: int = 1,
    parts: Sequence[str] | None = None,
    vendors: Sequence[str] = (),
    progress: Progress | None = None,
    command: str = "poller bench",
) -> Outcome:
    progress = progress or Progress()
    parts = parts or (QUICK_PARTS if quick else PARTS)
    sizes = QUICK if quick else FULL
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    started = time.monotonic()
    load_before = load_average()
    progress(f"{command}: load average {load_before} on {os.cpu_count()} CPUs")
    decode = await bench_decode_diff(sizes, seed, progress) if "cpu" in parts else None
    memory = await bench_memory(sizes, progress) if "memory" in parts else None
    arrivals: dict[str, tuple[int, list[float]]] = {}
    latency = await bench_latency(sizes, seed, progress, arrivals, vendors) if "latency" in parts else []
    publish = await bench_publish(sizes, progress) if "publish" in parts else None
    push = (
        await bench_push(
            sizes.push_calls, sizes.push_per_second, progress, poll_interval=sizes.push_poll_interval
        )
        if "push" in parts
        else None
    )
    cluster = await bench_cluster(sizes, seed, progress, arrivals) if "cluster" in parts else None
    results = Results(
        command=command,
        quick=quick,
        started_at=started_at,
        seconds=round(time.monotonic() - started, 1),
        machine=Machine(
            cpus=os.cpu_count() or 0,
            python=platform.python_version(),
            platform=platform.platform(),
            load_before=load_before,
            load_after=load_average(),
        ),
        figures=figures(latency, decode, publish, memory) + push_figures(push) + cluster_figures(cluster),
        latency=latency,
        decode_diff=decode,
        publish=publish,
        memory=memory,
        push=push,
        cluster=cluster,
    )
    return Outcome(results=results, arrivals=arrivals)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="poller bench",
        description="Measure the performance bars against simulators and a local nats-server, "
        "beside a plain baseline; print a table and write JSON.",
        epilog="Exit codes: 0 finished, 130 interrupted (Ctrl-C or SIGTERM); 2 bad usage.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds (smoke test)")
    parser.add_argument(
        "--json",
        dest="json_path",
        default="bench-results.json",
        metavar="PATH",
        help="where to write the results (default: bench-results.json)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the simulated changes")
    parser.add_argument(
        "--only",
        action="append",
        choices=PARTS,
        help="run only these parts (repeatable; default: all, and with --quick all but cluster)",
    )
    parser.add_argument(
        "--vendor",
        action="append",
        choices=sorted(SCENARIOS),
        help="latency part: only this row (a vendor's name is its full-sweep row; repeatable)",
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    return parser


def run_cli(argv: Sequence[str] | None = None, out: Any = None) -> Outcome:
    """Everything ``main`` does, returning the outcome (the tests read the request logs from it)."""
    args = build_parser().parse_args(argv)
    command = " ".join(["poller bench", *(argv if argv is not None else sys.argv[1:])])
    outcome = anyio.run(
        functools.partial(
            run_bench,
            quick=args.quick,
            seed=args.seed,
            parts=args.only,
            vendors=args.vendor or (),
            command=command,
        )
    )
    Path(args.json_path).write_bytes(msgspec.json.format(msgspec.json.encode(outcome.results)) + b"\n")
    print(render_table(outcome.results), file=out or sys.stdout, flush=True)
    print(f"\nresults written to {args.json_path}", file=out or sys.stdout, flush=True)
    return outcome


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        return child_main(args.child)
    # SIGTERM unwinds like Ctrl-C: the nats-servers and simulators this run started are stopped
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        run_cli(argv)
    except KeyboardInterrupt:
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
