"""Signals: the first SIGINT/SIGTERM stops gracefully, any further one exits now.

As a container's PID 1, a process ignores signals it has no handler for; a poller still waiting
for NATS would then wait for SIGKILL. Before start-up completes there is nothing to drain, so a
signal cancels; afterwards it drains (publishes and commits under way finish).

A second signal means "exit now" (as the nats CLI and docker compose do): the registered
clean-ups run (children killed and reaped, temporary directories removed), one log line says so,
and the process exits with 128 + the signal number (130 for SIGINT, 143 for SIGTERM). The handler
is a process-level one, so it works even when the event loop is busy or stuck in a cancellation.

SIGHUP reloads the configuration file (as Prometheus, Telegraf and nats-server do): an invalid
file is rejected with one log line and the running configuration is kept.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import NoReturn

import anyio

from poller.config import load_config
from poller.errors import ConfigError
from poller.ops.logs import check as check_logging
from poller.runtime.service import ExtraTask, Service

__all__ = [
    "STOP_SIGNALS",
    "ExitNow",
    "exit_code_for",
    "reload_on_hangup",
    "run_until_signalled",
    "stop_signals",
]

log = logging.getLogger("poller.lifecycle")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_code_for(signum: int) -> int:
    """The shell's convention for "ended by a signal": 128 + its number."""
    return 128 + signum


class ExitNow:
    """What a second signal does; clean-ups must be synchronous, quick and safe to run twice."""

    def __init__(self) -> None:
        self._cleanups: list[Callable[[], None]] = []

    @contextmanager
    def cleanup(self, action: Callable[[], None]) -> Iterator[None]:
        """Run ``action`` if the process exits now while inside this block."""
        self._cleanups.append(action)
        try:
            yield
        finally:
            self._cleanups.remove(action)

    def __call__(self, signum: int) -> NoReturn:
        code = exit_code_for(signum)
        log.warning(
            "second signal: exiting now without draining",
            extra={"signal": signal.Signals(signum).name, "exit_code": code},
        )
        for action in reversed(self._cleanups):
            with suppress(Exception):  # exiting anyway: one failed clean-up must not skip the others
                action()
        for stream in (sys.stdout, sys.stderr):
            with suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)


@contextmanager
def stop_signals(on_first: Callable[[int], None], exit_now: ExitNow) -> Iterator[None]:
    """Within the block, the first stop signal calls ``on_first`` in the event loop, the next exits now.

    Must be entered in the event loop's thread, from a running loop.
    """
    loop = asyncio.get_running_loop()
    received: list[int] = []

    def handler(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        if len(received) == 1:
            loop.call_soon_threadsafe(on_first, signum)
        else:
            exit_now(signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, before in previous.items():
            signal.signal(sig, before)


def reload_from(service: Service, path: str) -> None:
    """Read ``path`` again and hand it to the service, or say in one line why it is rejected."""
    try:
        config = load_config(path)
        problem = check_logging(config.logging.level, config.logging.format)
        if problem is not None:
            raise ConfigError(f"{path}: {problem}")
    except ConfigError as exc:
        log.error(
            "configuration reload rejected; the running configuration is kept", extra={"error": str(exc)}
        )
        return
    log.info("configuration reload requested", extra={"file": path})
    service.request_reload(config)


@contextmanager
def reload_on_hangup(on_hangup: Callable[[], None]) -> Iterator[None]:
    """Within the block, SIGHUP calls ``on_hangup`` in the event loop instead of ending the process."""
    loop = asyncio.get_running_loop()

    def handler(_signum: int, _frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(on_hangup)

    before = signal.signal(signal.SIGHUP, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGHUP, before)


async def run_until_signalled(
    service: Service,
    extra_tasks: list[ExtraTask] | None = None,
    exit_now: ExitNow | None = None,
    config_path: str | None = None,
) -> None:
    """Run until stopped; with ``config_path``, SIGHUP reloads it (before start-up completes, the
    reload is applied once started)."""
    startup = anyio.CancelScope()

    def first(signum: int) -> None:
        if service.started.is_set():
            log.info(
                "stop signal: draining (a second one exits now)",
                extra={"signal": signal.Signals(signum).name},
            )
            service.stop()
        else:
            startup.cancel()

    def hangup() -> None:
        if config_path is None:
            log.warning("SIGHUP ignored: no configuration file to reload")
        else:
            reload_from(service, config_path)

    with stop_signals(first, exit_now or ExitNow()), reload_on_hangup(hangup), startup:
        await service.run(extra_tasks)
