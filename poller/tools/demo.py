"""The embedded default: local nats-server, every vendor simulator, the poller, events printed live."""

from __future__ import annotations

import signal
from typing import Any

import anyio

from poller.config import parse_config
from poller.runtime.service import Service
from poller.simulators.registry import demo_setups
from poller.tools.natsserver import NatsServer
from poller.tools.tail import tail


async def run_demo(seed: int = 7, evolve_every: float = 2.0, duration: float | None = None) -> int:
    with NatsServer() as server:
        named = demo_setups(seed)
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
                "push": {
                    "enabled": True,
                    "port": 0,
                    "receivers": [r for setup in setups for r in setup.push_receivers],
                },
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
            print(f"demo: health and metrics at {base}/healthz {base}/readyz {base}/metrics", flush=True)
            for _ in range(100):
                if svc.push_port is not None:
                    break
                await anyio.sleep(0.05)
            push_base = f"http://127.0.0.1:{svc.push_port}"
            for setup in setups:
                if setup.start_push is not None:
                    setup.start_push(push_base)
            print(f"demo: push receivers at {push_base}/push/<vendor>/<account>\n", flush=True)
            # the demo's stream is new: reading it from the start shows every event once, including
            # those published before this subscription existed
            subject = f"{config.nats.subject_prefix}.>"
            await tail(server.url, subject, from_start=True, stream=config.nats.stream)

        async def stop_on_signal(svc: Service) -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    print("\ndemo: stopping", flush=True)
                    svc.stop()
                    return

        async def stop_after(svc: Service) -> None:
            if duration is not None:
                await anyio.sleep(duration)
                svc.stop()

        try:
            await service.run([evolve_worlds, printer, stop_on_signal, stop_after])
        finally:
            for setup in setups:
                await setup.simulator.stop()
    print("demo: stopped cleanly", flush=True)
    return 0
