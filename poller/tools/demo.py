"""The embedded default: local nats-server, every vendor simulator, the poller, events printed live.

Unless told otherwise it also plays one scripted episode of trouble (one vendor throttles, then
recovers), so the first run shows ``source-degraded`` and ``source-recovered`` as well as the happy
path; it ends with a summary of the events by type and of the calls by outcome.
"""

from __future__ import annotations

import io
import signal
import sys
from typing import Any, TextIO

import anyio

from poller.config import parse_config
from poller.runtime.service import Service
from poller.simulators.base import Fault
from poller.simulators.registry import demo_setups
from poller.tools.demo_view import DemoView
from poller.tools.faults import FaultSpec, run_fault
from poller.tools.natsserver import NatsServer
from poller.tools.tail import tail

__all__ = ["DEFAULT_EPISODE", "EPISODE_VENDOR", "run_demo"]

#: the vendor whose simulator throttles in the scripted episode
EPISODE_VENDOR = "byrobot"
DEFAULT_EPISODE = FaultSpec(vendor=EPISODE_VENDOR, kind=Fault.THROTTLE, after=8.0, lasts=6.0)


async def run_demo(
    seed: int = 7,
    evolve_every: float = 2.0,
    duration: float | None = None,
    episode: FaultSpec | None = DEFAULT_EPISODE,
    out: TextIO = sys.stdout,
) -> int:
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
        view = DemoView(out, {f"{s['vendor']}/{s['account']}" for s in sources})
        view.note(f"nats-server at {server.url} (JetStream, temporary store)")
        for name, setup in named.items():
            view.note(f"{name} simulator at {setup.simulator.url}")
        if episode is not None:
            view.note(
                f"scripted trouble: {episode.vendor} answers {episode.kind.value} from {episode.after:g}s "
                f"for {episode.lasts:g}s"
            )
        view.note("events follow; Ctrl-C stops everything")
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
            view.note(f"health and metrics at {base}/healthz {base}/readyz {base}/metrics")
            view.note(f"status page at {base}/status (or `poller status --url {base}`)")
            print(file=out, flush=True)
            # the demo's stream is new: reading it from the start shows every event once, including
            # those published before this subscription existed
            subject = f"{config.nats.subject_prefix}.>"
            await tail(
                server.url,
                subject,
                from_start=True,
                stream=config.nats.stream,
                out=out,
                status=io.StringIO(),  # "caught up" means nothing on a stream that is seconds old
                describe_with=view.line,
            )

        async def trouble(_: Service) -> None:
            if episode is not None:
                await run_fault(episode, named[episode.vendor].simulator, view.note)

        async def stop_on_signal(svc: Service) -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    print(file=out)
                    view.note("stopping")
                    svc.stop()
                    return

        async def stop_after(svc: Service) -> None:
            if duration is not None:
                await anyio.sleep(duration)
                svc.stop()

        try:
            await service.run([evolve_worlds, printer, trouble, stop_on_signal, stop_after])
        finally:
            for setup in setups:
                await setup.simulator.stop()
    print(file=out)
    for line in view.summary():
        print(line, file=out)
    view.note("stopped cleanly")
    return 0
