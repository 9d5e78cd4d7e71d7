"""Tencent wire pages and our decode+normalize+diff of them (shared by the CPU and memory parts)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import msgspec

from poller.pipeline.differ import Basis, Diff, SweepDiff
from poller.pipeline.snapshot import EntitySnapshot, Observation
from poller.pipeline.state import SourceState
from poller.tools.bench.sizes import APP, FIRST_TASK_ID, PRIVACY, SOURCE
from poller.transport import Response
from poller.vendors.listing import Listing, SeenItems
from poller.vendors.tencent_ccc import classify_raw, decode_task, normalize
from schemas.vendors.tencent_ccc import AutoCalloutTaskInfo, DescribeAutoCalloutTasksResponse

__all__ = ["decode_tencent", "our_sweep", "tencent_page", "tencent_pages"]

# -- Tencent wire pages (shared by the CPU and memory parts) ---------------------------------------
decode_tencent = msgspec.json.Decoder(DescribeAutoCalloutTasksResponse)


def tencent_page(first: int, states: Sequence[int], total: int) -> bytes:
    """One DescribeAutoCalloutTasks answer, encoded the way the simulator encodes it."""
    tasks = [
        AutoCalloutTaskInfo(
            TaskId=first + i,
            State=state,
            Name=f"task-{first + i}",
            CalleeCount=10,
            Callers=["0755" + str(first + i)],
            NotBefore=1_700_000_000,
            NotAfter=None,
            IvrId=1,
        )
        for i, state in enumerate(states)
    ]
    return msgspec.json.encode(
        {"Response": {"TotalCount": total, "Tasks": tasks, "RequestId": str(uuid.uuid4())}}
    )


def tencent_pages(states: Sequence[int], page_size: int) -> Iterator[bytes]:
    total = len(states)
    for start in range(0, total, page_size):
        yield tencent_page(FIRST_TASK_ID + start, states[start : start + page_size], total)


def our_sweep(
    bodies: Sequence[bytes], committed: SourceState, seen: SeenItems, basis: Basis | None = None
) -> Diff:
    """What one Tencent poll cycle does with its pages: classify, decode, normalize, diff.

    Mirrors ``TencentCccSource.observe`` with the service's page sink after the HTTP exchanges:
    each page's envelope is decoded once (classification hands it back) with its tasks left raw;
    a task whose bytes match the last sweep's (``seen``) reuses its snapshot, the others are
    decoded and normalized; each page is kept in the listing and diffed at once, against the last
    cycle's ``basis`` as the source loop hands it on (the reused snapshots are skipped); the end of
    the sweep diffs nothing twice and looks for vanished tasks.
    """
    sweep = SweepDiff(SOURCE, committed, PRIVACY, basis=basis)
    listing = Listing(None)
    totals: set[int | None] = set()
    parent = str(APP)
    now = datetime.now(UTC)

    def build(raw: msgspec.Raw) -> EntitySnapshot:
        return normalize(decode_task(raw), parent)

    for body in bodies:
        result = classify_raw(Response(200, {"Content-Type": "application/json"}, body)).Response
        assert result.Tasks is not None
        totals.add(result.TotalCount)
        page = listing.keep(seen.snapshots(result.Tasks, build))
        sweep.apply(page, now)  # what the service's page sink does with it
    complete = len(totals) == 1 and len(listing) == next(iter(totals))
    seen.end_sweep(complete)
    return sweep.finish(Observation(entities=listing.snapshots(), complete=complete), now)
