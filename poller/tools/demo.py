"""The embedded default: local nats-server, every vendor simulator, the poller, events printed live."""

from __future__ import annotations

from typing import Any

import anyio

from poller.config import parse_config
from poller.runtime.lifecycle import ExitNow, stop_signals
from poller.runtime.service import ExtraTask, Service
from poller.simulators.registry import DemoSetup, demo_setups
from poller.tools.natsserver import NatsServer
from poller.tools.tail import tail


async def run_demo(seed: int = 7, evolve_every: float = 2.0, duration: float | None = None) -> int:
    """Ctrl-C stops everything gracefully; a second Ctrl-C exits now (130), nats-server and store gone."""
    exit_now = ExitNow()
    startup = anyio.CancelScope()
    service: Service | None = None

    def first(_signum: int) -> None:
        print("\ndemo: stopping", flush=True)
        if service is not None and service.started.is_set():
            service.stop()
        else:
            startup.cancel()

    server = NatsServer()
    # the clean-up is registered before the server starts: a second Ctrl-C during its start kills it too
    with stop_signals(first, exit_now), startup, exit_now.cleanup(server.close_now), server:
        named = demo_setups(seed)
        setups = list(named.values())
        try:
            service, tasks = await _prepare(server, named, evolve_every, duration)
            await service.run(tasks)
        finally:
            with anyio.CancelScope(shield=True):
                for setup in setups:
                    await setup.simulator.stop()
    print("demo: stopped cleanly", flush=True)
    return 0


async def _prepare(
    server: NatsServer, named: dict[str, DemoSetup], evolve_every: float, duration: float | None
) -> tuple[Service, list[ExtraTask]]:
    """Start the simulators; the poller against them and the demo's own tasks beside it."""
    setups = list(named.values())
    sources: list[dict[str, Any]] = []
    for setup in setups:
        await setup.simulator.start()
        sources.extend(setup.sources(setup.simulator.url))
    config = parse_config(
        {
            "nats": {"url": server.url},
            "http": {"port": 0, "host": "127.0.0.1"},
            "logging": {"level": "WARNING"},
            "sources": sources,
        },
        path="<demo>",
    )
    print(f"demo: nats-server at {server.url} (JetStream, temporary store)", flush=True)
    for name, setup in named.items():
        print(f"demo: {name} simulator at {setup.simulator.url}", flush=True)
    print("demo: events follow; Ctrl-C stops everything", flush=True)
    service = Service(config)

    async def evolve_worlds(_: Service) -> None:
        while True:
            await anyio.sleep(evolve_every)
            for setup in setups:
                setup.evolve()

    async def printer(svc: Service) -> None:
        # the ops port first, so it is not lost among the events
        for _ in range(100):
            if svc.http_port is not None:
                break
            await anyio.sleep(0.05)
        base = f"http://127.0.0.1:{svc.http_port}"
        print(f"demo: health and metrics at {base}/healthz {base}/readyz {base}/metrics\n", flush=True)
        # the demo's stream is new: reading it from the start shows every event once, including
        # those published before this subscription existed
        subject = f"{config.nats.subject_prefix}.>"
        await tail(server.url, subject, from_start=True, stream=config.nats.stream)

    async def stop_after(svc: Service) -> None:
        if duration is not None:
            await anyio.sleep(duration)
            svc.stop()

    return service, [evolve_worlds, printer, stop_after]
