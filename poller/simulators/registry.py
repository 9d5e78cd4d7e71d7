"""Demo wiring of each simulator: a running simulator, the config that points the poller at it, and
a step that moves its world forward. One entry per vendor, next to the vendor registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from poller.simulators.base import Simulator


@dataclass
class DemoSetup:
    simulator: Simulator
    #: [[sources]] entries for the poller, given the simulator's base URL
    sources: Callable[[str], list[dict[str, Any]]]
    #: one step of scripted, seeded evolution
    evolve: Callable[[], None]


def _tencent(seed: int) -> DemoSetup:
    from poller.simulators.tencent_ccc import TencentCccSimulator

    sim = TencentCccSimulator(credentials={"AKIDdemo": "demo-secret-key"}, seed=seed)
    for app in (1400000001, 1400000002):
        for _ in range(3):
            sim.add_task(app)

    def sources(url: str) -> list[dict[str, Any]]:
        return [
            {
                "vendor": "tencent-ccc",
                "account": "demo",
                "secret_id": "AKIDdemo",
                "secret_key": "demo-secret-key",
                "sdk_app_ids": [1400000001, 1400000002],
                "endpoint": url,
                "poll_interval": 1.0,
            }
        ]

    def evolve() -> None:
        sim.evolve()
        if sim.rng.random() < 0.1:
            sim.add_task(1400000001)

    return DemoSetup(sim, sources, evolve)


DEMOS: dict[str, Callable[[int], DemoSetup]] = {
    "tencent-ccc": _tencent,
}
