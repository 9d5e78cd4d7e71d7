"""Demo wiring of each simulator, one line per vendor in ``_MODULES``.

Each simulator module provides ``demo_setup(seed) -> DemoSetup``: a simulator, the ``[[sources]]``
entries that point the poller at it, and a step that moves its world forward.
"""

from __future__ import annotations

from importlib import import_module

from poller.simulators.base import DemoSetup

__all__ = ["DemoSetup", "demo_setups", "simulator_names"]

_MODULES = (
    "alibaba_aiccs",
    "alibaba_outboundbot",
    "byrobot",
    "huawei_aicc",
    "tencent_ccc",
)


def demo_setups(seed: int) -> dict[str, DemoSetup]:
    out: dict[str, DemoSetup] = {}
    for name in _MODULES:
        module = import_module(f"poller.simulators.{name}")
        setup: DemoSetup = module.demo_setup(seed)
        out[setup.simulator.vendor] = setup
    return out


def simulator_names() -> list[str]:
    """The vendor name of every simulator (what ``--vendor`` and ``--fault VENDOR:...`` accept)."""
    return list(demo_setups(0))
