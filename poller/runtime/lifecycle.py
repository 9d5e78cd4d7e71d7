"""Run a service until SIGTERM/SIGINT, with the handlers installed before anything connects.

As a container's PID 1, a process ignores signals it has no handler for; a poller still waiting
for NATS would then wait for SIGKILL. Before start-up completes there is nothing to drain, so a
signal cancels; afterwards it drains (publishes and commits under way finish).
"""

from __future__ import annotations

import signal

import anyio

from poller.runtime.service import ExtraTask, Service


async def run_until_signalled(service: Service, extra_tasks: list[ExtraTask] | None = None) -> None:
    async with anyio.create_task_group() as tg:

        async def watch_signals() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    if service.started.is_set():
                        service.stop()
                    else:
                        tg.cancel_scope.cancel()
                    return

        async def serve() -> None:
            await service.run(extra_tasks)
            tg.cancel_scope.cancel()

        tg.start_soon(watch_signals)
        tg.start_soon(serve)
