"""Scheduled faults for the simulators: ``VENDOR:KIND`` from a time on, for a while, then cleared.

``poller simulate --fault`` and the demo's scripted episode use it, so a team can rehearse its
alert routing end to end (source-degraded, then source-recovered) against the real poller.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import anyio
import msgspec

from poller.simulators.base import Fault, Simulator

__all__ = ["FAULT_KINDS", "FaultSpec", "FaultUsageError", "parse_fault", "run_fault"]

FAULT_KINDS: tuple[str, ...] = tuple(kind.value for kind in Fault)


class FaultUsageError(ValueError):
    """A ``--fault`` that names no simulator or no fault kind."""


class FaultSpec(msgspec.Struct, frozen=True, kw_only=True):
    vendor: str
    kind: Fault
    #: seconds after start-up before the fault begins
    after: float = 0.0
    #: seconds it lasts; None = until the simulators stop
    lasts: float | None = None


def parse_fault(
    text: str, vendors: Iterable[str], after: float = 0.0, lasts: float | None = None
) -> FaultSpec:
    vendor, sep, kind = text.partition(":")
    known = sorted(vendors)
    if not sep or vendor not in known:
        raise FaultUsageError(f"--fault {text!r}: expected VENDOR:KIND with VENDOR one of {', '.join(known)}")
    if kind not in FAULT_KINDS:
        raise FaultUsageError(f"--fault {text!r}: KIND is one of {', '.join(FAULT_KINDS)}")
    if after < 0 or (lasts is not None and lasts <= 0):
        raise FaultUsageError(f"--fault {text!r}: --after must be >= 0 and --for > 0 seconds")
    return FaultSpec(vendor=vendor, kind=Fault(kind), after=after, lasts=lasts)


async def run_fault(spec: FaultSpec, simulator: Simulator, announce: Callable[[str], None]) -> None:
    """Wait, inject, wait, clear; each step announced. Cancelling it clears the fault too."""
    await anyio.sleep(spec.after)
    plan = simulator.inject(spec.kind)
    span = "until stopped" if spec.lasts is None else f"for {spec.lasts:g}s"
    announce(f"fault on: {spec.vendor} answers {spec.kind.value} ({span})")
    try:
        if spec.lasts is None:
            await anyio.sleep_forever()
        else:
            await anyio.sleep(spec.lasts)
    finally:
        simulator.remove_fault(plan)
    announce(f"fault off: {spec.vendor} answers normally again")
