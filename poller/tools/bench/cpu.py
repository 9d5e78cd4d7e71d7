"""Decode + diff of a steady and a first sweep, ours and the baseline, each in a fresh subprocess."""

from __future__ import annotations

import functools
import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from poller.pipeline.differ import Basis, Diff
from poller.pipeline.state import SourceState
from poller.tools.bench.baseline import (
    plain_decode_and_compare,
)
from poller.tools.bench.child import child_line, run_child
from poller.tools.bench.pages import our_sweep, tencent_pages
from poller.tools.bench.progress import Progress
from poller.tools.bench.results import DecodeDiffResult, Throughput
from poller.tools.bench.sizes import ACCOUNT, Sizes
from poller.vendors.listing import SeenItems

__all__ = ["CHANGED_FRACTION", "CpuChild", "bench_decode_diff", "child_cpu", "cpu_pages"]


# -- decode + diff (each side in a fresh subprocess) ----------------------------------------------------
class CpuChild(msgspec.Struct, frozen=True, kw_only=True):
    """What one decode+diff subprocess reports: entities per CPU-second, per repeat."""

    steady: list[float]
    first_sweep: list[float]


def _cpu_rate(items: int, run: Callable[[], object]) -> float:
    """Items per CPU-second of this thread: other processes on the machine do not count against us."""
    started = time.thread_time()
    run()
    return items / max(1e-9, time.thread_time() - started)


CHANGED_FRACTION = 0.01


def cpu_pages(n: int, page_size: int, seed: int) -> tuple[list[bytes], list[bytes]]:
    """A first sweep's pages and the next sweep's, with ``CHANGED_FRACTION`` of the tasks changed."""
    rng = random.Random(seed)
    states = [rng.choice((0, 1, 2, 5)) for _ in range(n)]
    first = list(tencent_pages(states, page_size))
    for i in rng.sample(range(n), max(1, int(n * CHANGED_FRACTION))):
        states[i] = 5 if states[i] == 1 else 1
    return first, list(tencent_pages(states, page_size))


def _plain_sweep(bodies: Sequence[bytes], known: dict[int, dict[str, Any]]) -> None:
    for body in bodies:
        plain_decode_and_compare(known, body, "tencent-ccc", ACCOUNT)


def _kept(cycle: Diff) -> tuple[SourceState, Basis | None]:
    """What the source loop keeps of a finished cycle: the state it commits and the basis it hands
    on (not the cycle's events or changed ids, which the commit and publish let go)."""
    return cycle.state, cycle.basis


def child_cpu(who: str, n: int, page_size: int, repeats: int, seed: int) -> CpuChild:
    """Run in a fresh process, so neither side pays for the other's objects in the GC's heap."""
    first, second = cpu_pages(n, page_size, seed)
    steady: list[float] = []
    cold: list[float] = []
    seen = SeenItems()
    committed, basis = _kept(our_sweep(first, SourceState(), seen)) if who == "ours" else (None, None)
    plain_known: dict[int, dict[str, Any]] = {}
    if who != "ours":
        _plain_sweep(first, plain_known)
    for repeat in range(repeats):
        if who == "ours":
            # each repeat starts from what the first sweep left: the committed state, its seen items
            # and the basis it handed the next cycle
            assert committed is not None
            steady.append(_cpu_rate(n, functools.partial(our_sweep, second, committed, seen.copy(), basis)))
            cold.append(_cpu_rate(n, functools.partial(our_sweep, first, SourceState(), SeenItems())))
        else:
            # the baseline updates its map in place: each repeat starts from a copy of the committed one
            steady.append(_cpu_rate(n, functools.partial(_plain_sweep, second, dict(plain_known))))
            cold.append(_cpu_rate(n, functools.partial(_plain_sweep, first, {})))
        child_line(f"decode+diff ({who}) repeat {repeat + 1}/{repeats}: {steady[-1]:,.0f} entities/s")
    return CpuChild(steady=steady, first_sweep=cold)


async def bench_decode_diff(sizes: Sizes, seed: int, progress: Progress) -> DecodeDiffResult:
    n, page_size = sizes.cpu_entities, sizes.tencent_page_size
    progress(
        f"decode+diff: {n:,} Tencent tasks in {-(-n // page_size)} pages, {CHANGED_FRACTION:.0%} changed "
        "per sweep; ours and the baseline each in a fresh subprocess"
    )
    args = [str(n), str(page_size), str(sizes.cpu_repeats), str(seed)]
    ours = await run_child(["cpu-ours", *args], CpuChild)
    plain = await run_child(["cpu-baseline", *args], CpuChild)

    def throughput(rates: list[float]) -> Throughput:
        return Throughput(items=n, rates=[round(r) for r in rates], per_second=statistics.median(rates))

    result = DecodeDiffResult(
        entities=n,
        page_size=page_size,
        changed_fraction=CHANGED_FRACTION,
        ours_steady=throughput(ours.steady),
        baseline_steady=throughput(plain.steady),
        ours_first_sweep=throughput(ours.first_sweep),
        baseline_first_sweep=throughput(plain.first_sweep),
    )
    progress(
        f"decode+diff: ours {result.ours_steady.per_second:,.0f}/s, "
        f"baseline {result.baseline_steady.per_second:,.0f}/s (median of {sizes.cpu_repeats})"
    )
    return result
