"""The embedded default: local nats-server, every vendor simulator, the poller, events printed live."""

from __future__ import annotations

import io
import sys
from typing import Any, TextIO

import anyio

from poller.config import parse_config
from poller.runtime.lifecycle import ExitNow, stop_signals
from poller.runtime.service import ExtraTask, Service
from poller.simulators.base import Fault
from poller.simulators.registry import DemoSetup, demo_setups
from poller.tools.demo_view import DemoView
from poller.tools.faults import FaultSpec, run_fault
from poller.tools.natsserver import NatsServer
from poller.tools.tail import tail

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
    """Ctrl-C stops everything gracefully; a second Ctrl-C exits now (130), nats-server and store gone."""
    exit_now = ExitNow()
    startup = anyio.CancelScope()
    service: Service | None = None
    view: DemoView | None = None

    def first(_signum: int) -> None:
        print(file=out)
        if view is not None:
            view.note("stopping")
        else:
            print("demo: stopping", file=out, flush=True)
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
            service, view, tasks = await _prepare(server, named, evolve_every, duration, episode, out)
            await service.run(tasks)
        finally:
            with anyio.CancelScope(shield=True):
                for setup in setups:
                    await setup.simulator.stop()
    print(file=out)
    if view is not None:
        for line in view.summary():
            print(line, file=out)
    print("demo: stopped cleanly", file=out, flush=True)
    return 0


async def _prepare(
    server: NatsServer,
    named: dict[str, DemoSetup],
    evolve_every: float,
    duration: float | None,
    episode: FaultSpec | None,
    out: TextIO,
) -> tuple[Service, DemoView, list[ExtraTask]]:
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
            "push": {
                "enabled": True,
                "port": 0,
                "receivers": [r for setup in setups for r in setup.push_receivers],
            },
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
        for _ in range(100):
            if svc.push_port is not None:
                break
            await anyio.sleep(0.05)
        push_base = f"http://127.0.0.1:{svc.push_port}"
        for setup in setups:
            if setup.start_push is not None:
                setup.start_push(push_base)
        view.note(f"push receivers at {push_base}/push/<vendor>/<account>")
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

    async def stop_after(svc: Service) -> None:
        if duration is not None:
            await anyio.sleep(duration)
            svc.stop()

    return service, view, [evolve_worlds, printer, trouble, stop_after]
