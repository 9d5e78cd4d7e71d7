"""The embedded default: local nats-server, every vendor simulator, the poller, events printed live."""

from __future__ import annotations

import signal
import sys
from typing import Any

import anyio
import msgspec
import nats

from poller.config import parse_config
from poller.natsserver import NatsServer
from poller.render import describe
from poller.service import Service
from poller.simulators.registry import demo_setups
from schemas import Event


async def print_events(nats_url: str, subject: str, out: Any = sys.stdout) -> None:
    decoder = msgspec.json.Decoder(Event)
    nc = await nats.connect(nats_url)
    try:
        sub = await nc.subscribe(subject)
        async for msg in sub.messages:
            print(describe(decoder.decode(msg.data)), file=out, flush=True)
    finally:
        await nc.close()


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
            },
            path="<demo>",
        )
        print(f"demo: nats-server at {server.url} (JetStream, temporary store)", flush=True)
        for name, setup in named.items():
            print(f"demo: {name} simulator at {setup.simulator.url}", flush=True)
        print("demo: events follow; Ctrl-C stops everything\n", flush=True)
        service = Service(config)

        async def evolve_worlds(_: Service) -> None:
            while True:
                await anyio.sleep(evolve_every)
                for setup in setups:
                    setup.evolve()

        async def printer(_: Service) -> None:
            await print_events(server.url, f"{config.nats.subject_prefix}.>")

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
