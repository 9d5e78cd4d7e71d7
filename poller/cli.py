"""The ``poller`` command.

Exit codes: 0 success, 1 runtime failure, 2 bad configuration or usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from typing import Any

import anyio
import msgspec

from poller.config import Config, load_config
from poller.errors import ConfigError
from poller.secrets import Secret

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2
EXIT_CODES = "Exit codes: 0 ok, 1 runtime failure, 2 bad configuration or usage, 130 interrupted."


def _load(path: str) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return None


def _cmd_run(args: argparse.Namespace) -> int:
    from poller.lifecycle import run_until_signalled
    from poller.ops.logs import configure
    from poller.service import Service

    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    configure(config.logging.level, config.logging.format)
    anyio.run(run_until_signalled, Service(config))
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from poller.demo import run_demo
    from poller.ops.logs import configure

    configure("WARNING", "text")
    return anyio.run(run_demo, args.seed, args.evolve_every, args.duration)


def _redacted(value: Any) -> Any:
    if isinstance(value, Secret):
        return f"<redacted, from {value.source}>"
    if isinstance(value, msgspec.Struct):
        return {f: _redacted(getattr(value, f)) for f in value.__struct_fields__}
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    return value


def _cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    inline = [
        f"sources[{i}].{name}"
        for i, source in enumerate(config.sources)
        for name in source.__struct_fields__
        if isinstance(getattr(source, name), Secret) and getattr(source, name).source == "inline"
    ]
    print(json.dumps(_redacted(config), indent=2, ensure_ascii=False, default=str))
    for where in inline:
        print(f"warning: {where} is an inline secret; use {{env = ...}} or {{file = ...}}", file=sys.stderr)
    print(f"ok: {len(config.sources)} source(s)", file=sys.stderr)
    return EXIT_OK


def _cmd_tail(args: argparse.Namespace) -> int:
    from poller.tail import tail, tail_subject

    subject = tail_subject(args.prefix, args.vendor, args.account, args.type)
    print(f"tail: {args.server} {subject}", file=sys.stderr)

    async def main() -> int:
        await tail(args.server, subject, as_json=args.json, from_start=args.from_start, limit=args.limit)
        return EXIT_OK

    return anyio.run(main)


def _cmd_schema(args: argparse.Namespace) -> int:
    from schemas import contract

    if args.write:
        for path in contract.write():
            print(f"wrote {path}", file=sys.stderr)
        return EXIT_OK
    print(contract.render(contract.asyncapi() if args.asyncapi else contract.json_schema()), end="")
    return EXIT_OK


def _cmd_simulate(args: argparse.Namespace) -> int:
    from poller.simulate import run_simulators

    return anyio.run(run_simulators, args.seed, args.host, args.port, args.vendor, args.evolve_every)


def _cmd_bench(args: argparse.Namespace) -> int:
    try:
        bench = importlib.import_module("poller.bench")
    except ImportError:
        print("bench: not built in this version", file=sys.stderr)
        return EXIT_FAILURE
    code: int = bench.main(args.bench_args)
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="poller",
        description="Watch AI outbound-calling platforms and publish change events to NATS JetStream.",
        epilog=EXIT_CODES,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, epilog=EXIT_CODES)

    run = command("run", "run the poller with a configuration file (SIGTERM drains and exits 0)")
    run.add_argument("--config", "-c", required=True, help="TOML configuration file")
    run.set_defaults(func=_cmd_run)

    demo = command("demo", "local NATS + every vendor simulator + the poller, events printed live")
    demo.add_argument("--seed", type=int, default=7, help="seed of the simulators' evolution")
    demo.add_argument("--evolve-every", type=float, default=2.0, help="seconds between world changes")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    demo.set_defaults(func=_cmd_demo)

    check = command("check-config", "validate a configuration file and print it with secrets redacted")
    check.add_argument("config", help="TOML configuration file")
    check.set_defaults(func=_cmd_check_config)

    tail = command("tail", "follow events: readable lines (or --json), filtered by vendor, account, type")
    tail.add_argument("--server", "-s", default="nats://127.0.0.1:4222", help="NATS URL")
    tail.add_argument("--prefix", default="aicc", help="subject prefix")
    tail.add_argument("--vendor")
    tail.add_argument("--account")
    tail.add_argument("--type", help="event type, e.g. call-finished")
    tail.add_argument("--json", action="store_true", help="print raw JSON payloads")
    tail.add_argument("--from-start", action="store_true", help="replay the stream from its beginning")
    tail.add_argument("--limit", type=int, default=None, help="stop after this many events")
    tail.set_defaults(func=_cmd_tail)

    simulate = command("simulate", "run the vendor simulators standalone; prints URLs and credentials")
    simulate.add_argument("--seed", type=int, default=7)
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--port", type=int, default=0, help="port of the first simulator (0: any free)")
    simulate.add_argument("--vendor", default=None, help="only this vendor's simulator")
    simulate.add_argument("--evolve-every", type=float, default=2.0)
    simulate.set_defaults(func=_cmd_simulate)

    bench = command("bench", "benchmark against local NATS and simulators (see README, Performance)")
    bench.add_argument("bench_args", nargs="*", help="arguments passed to the benchmark")
    bench.set_defaults(func=_cmd_bench)

    schema = command("schema", "print the events' JSON Schema (or --asyncapi); --write regenerates them")
    schema.add_argument("--asyncapi", action="store_true")
    schema.add_argument("--write", action="store_true", help="regenerate the files committed in schemas/")
    schema.set_defaults(func=_cmd_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command != "bench":
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.bench_args = [*args.bench_args, *extra]
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
