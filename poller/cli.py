"""The ``poller`` command.

Exit codes: 0 success, 1 runtime failure, 2 bad configuration or usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

import anyio

from poller.config import load_config
from poller.errors import ConfigError

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


def _cmd_demo(args: argparse.Namespace) -> int:
    from poller.demo import run_demo

    return anyio.run(run_demo, args.seed, args.evolve_every, args.duration)


def _cmd_run(args: argparse.Namespace) -> int:
    from poller.service import Service

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG

    async def main() -> int:
        service = Service(config)

        async def stop_on_signal(svc: Service) -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    svc.stop()
                    return

        await service.run([stop_on_signal])
        return EXIT_OK

    return anyio.run(main)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="poller",
        description="Watch AI outbound-calling platforms and publish change events to NATS JetStream.",
        epilog="Exit codes: 0 ok, 1 runtime failure, 2 bad configuration or usage.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the poller with a configuration file")
    run.add_argument("--config", "-c", required=True, help="TOML configuration file")
    run.set_defaults(func=_cmd_run)

    demo = sub.add_parser("demo", help="local NATS + vendor simulators + poller, events printed live")
    demo.add_argument("--seed", type=int, default=7, help="seed of the simulators' evolution")
    demo.add_argument("--evolve-every", type=float, default=2.0, help="seconds between world changes")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
