"""Demo wiring of each simulator, one line per vendor in ``_MODULES``.

Each simulator module provides ``demo_setup(seed) -> DemoSetup``: a simulator, the ``[[sources]]``
entries that point the poller at it, and a step that moves its world forward.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from poller.simulators.base import Simulator

_MODULES = (
    "alibaba_aiccs",
    "alibaba_outboundbot",
    "byrobot",
    "huawei_aicc",
    "tencent_ccc",
)


@dataclass
class DemoSetup:
    simulator: Simulator
    #: [[sources]] entries for the poller, given the simulator's base URL
    sources: Callable[[str], list[dict[str, Any]]]
    #: one step of scripted, seeded evolution
    evolve: Callable[[], None]


def demo_setups(seed: int) -> dict[str, DemoSetup]:
    out: dict[str, DemoSetup] = {}
    for name in _MODULES:
        module = import_module(f"poller.simulators.{name}")
        setup: DemoSetup = module.demo_setup(seed)
        out[setup.simulator.vendor] = setup
    return out
