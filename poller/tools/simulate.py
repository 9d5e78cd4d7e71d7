"""``poller simulate``: every vendor simulator standalone, with the config that points at each."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

import anyio

from poller.runtime.lifecycle import ExitNow, stop_signals
from poller.simulators.registry import demo_setups
from poller.tools.faults import FaultSpec, run_fault


def _announce(what: str) -> None:
    print(f"# {datetime.now().strftime('%H:%M:%S')} {what}", flush=True)


def _toml(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string escapes like JSON
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


async def run_simulators(
    seed: int,
    host: str,
    port: int,
    vendor: str | None,
    evolve_every: float,
    faults: Sequence[FaultSpec] = (),
) -> int:
    setups = {name: s for name, s in demo_setups(seed).items() if vendor is None or name == vendor}
    if not setups:
        print(f"simulate: no simulator named {vendor!r}")
        return 2
    for spec in faults:
        if spec.vendor not in setups:
            print(f"simulate: --fault {spec.vendor}:{spec.kind.value}: that simulator is not started")
            return 2
    for offset, (name, setup) in enumerate(setups.items()):
        await setup.simulator.start(host, port + offset if port else 0)
        print(f"# {name} simulator at {setup.simulator.url}")
        for source in setup.sources(setup.simulator.url):
            print("[[sources]]")
            for key, value in source.items():
                print(f"{key} = {_toml(value)}")
            print()
    running = anyio.CancelScope()
    try:
        # the first Ctrl-C/SIGTERM stops the simulators, a second one exits now (130/143)
        with stop_signals(lambda _signum: running.cancel(), ExitNow()), running:
            print("# Ctrl-C stops the simulators", flush=True)
            async with anyio.create_task_group() as tg:

                async def evolve() -> None:
                    while True:
                        await anyio.sleep(evolve_every)
                        for setup in setups.values():
                            setup.evolve()

                tg.start_soon(evolve)
                for spec in faults:
                    tg.start_soon(run_fault, spec, setups[spec.vendor].simulator, _announce)
    finally:
        with anyio.CancelScope(shield=True):
            for setup in setups.values():
                await setup.simulator.stop()
    return 0
